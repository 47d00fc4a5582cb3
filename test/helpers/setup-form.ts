/**
 * Fills the setup screen's second form (client, Vault, targets) with the lab's values, as a person
 * would, for the tests that go from no configuration to a running app through that screen.
 */
import type { Page } from 'playwright-core';
import { DEMO_POLICY_FILE } from '../../lab/app-config.ts';
import type { Lab } from '../../lab/index.ts';

export async function fillSetupTargets(page: Page, lab: Lab, delegation: 'rar' | 'scopes'): Promise<void> {
  const form = page.getByRole('form', { name: 'Client, Vault and targets' });
  await form.getByLabel('Client ID').fill(lab.idp.nativeClientId);
  await form.getByLabel('Delegation profile').selectOption(delegation);
  await form.getByLabel('Resource of your own sign-in token (optional)').fill('urn:countersign:app');
  await form.getByLabel('Vault address').fill(lab.vaultAddr);
  await form.getByLabel('Policy file').fill(DEMO_POLICY_FILE);
  const pg = new URL(lab.postgresUrl);
  await form.getByLabel('PostgreSQL host').fill(pg.hostname);
  await form.getByLabel('PostgreSQL port').fill(pg.port);
  await form.getByLabel('PostgreSQL database').fill(pg.pathname.slice(1));
}
