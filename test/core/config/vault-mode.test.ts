import { describe, expect, it } from 'vitest';
import { parseAppConfig } from '../../../main/core/config/config.ts';

const config = (vault: Record<string, unknown>, idp: Record<string, unknown> = {}) =>
  parseAppConfig({ idp: { issuer: 'https://idp.example', clientId: 'countersign-desktop', ...idp }, vault: { address: 'https://vault.example:8200', ...vault }, policyFile: 'policy.jsonc' });

describe('the Vault mode in the configuration', () => {
  it('is jwt-login unless agent mode is asked for', () => {
    expect(config({}).vault.mode).toBe('jwt-login');
    expect(config({ mode: 'agent' }).vault.mode).toBe('agent');
  });

  it('refuses a mode it does not know', () => {
    expect(() => config({ mode: 'token' })).toThrow(/vault\.mode/);
  });

  it('refuses agent mode with scope-level delegation: the Vault paths travel as RAR', () => {
    expect(() => config({ mode: 'agent' }, { delegation: 'scopes' })).toThrow(/vault\.mode: agent mode needs idp\.delegation "rar"/);
  });
});
