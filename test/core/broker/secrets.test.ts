import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startBrokerLab, call, type BrokerLab } from './lab.ts';
import { findSecret, MemoryAudit } from './fixtures.ts';
import type { TokenExchanger } from '../../../main/core/idp/token-exchange.ts';
import type { VaultClient } from '../../../main/core/vault/client.ts';

let lab: BrokerLab;
beforeAll(async () => {
  lab = await startBrokerLab();
});
afterAll(async () => {
  await lab?.stop();
});

it('plants the user token, OBOs, Vault tokens and database passwords and finds none of them in any log, record, error or answer', async () => {
  const planted: Record<string, string> = { user_access_token: lab.alice.accessToken };
  let n = 0;
  // Pass-through observers of the real clients: they only note the secrets each call held.
  const idp: TokenExchanger = {
    async exchange(r) {
      const obo = await lab.exchanger.exchange(r);
      planted[`obo_${++n}`] = obo.token;
      return obo;
    },
  };
  const vault: VaultClient = {
    ...lab.vaultClient,
    async loginJwt(...args) {
      const l = await lab.vaultClient.loginJwt(...args);
      planted[`vault_token_${++n}`] = l.token;
      return l;
    },
    async databaseCreds(...args) {
      const c = await lab.vaultClient.databaseCreds(...args);
      planted[`db_password_${++n}`] = c.password;
      return c;
    },
  };
  const audit = new MemoryAudit();
  const approver = { approve: async () => ({ outcome: 'approved' as const }) };
  const { broker } = lab.broker({ idp, vault, audit, approver });
  const answers: CallToolResult[] = [];
  answers.push(await broker.callTool(call('query', { sql: 'SELECT id, full_name FROM patients' })));
  answers.push(await broker.callTool(call('query', { sql: 'SELECT no_such_column FROM patients' })));
  answers.push(await broker.callTool(call('execute', { sql: 'UPDATE patients SET full_name = $1 WHERE id = $2', params: ['x', 1] })));
  answers.push(await broker.callTool(call('execute', { sql: "INSERT INTO notes (patient_id, body) VALUES (1, 'ok')" })));
  answers.push(await broker.callTool(call('query', { sql: 'SELECT pg_sleep(0.01), id FROM notes' }, { signal: AbortSignal.timeout(5) })));
  lab.vault.seal();
  answers.push(await broker.callTool(call('query', { sql: 'SELECT id FROM patients' })));
  lab.vault.unseal();

  expect(Object.keys(planted).filter((k) => k.startsWith('db_password')).length).toBeGreaterThanOrEqual(3);
  const vaultAudit = await readFile(lab.vaultAuditLogPath, 'utf8').catch(() => '');
  const outputs: Record<string, string> = {
    'core log': lab.logs.core.join('\n'),
    'lab log (IdP, Vault, PostgreSQL)': lab.logs.lab.join('\n'),
    'Vault audit device': vaultAudit,
    'PostgreSQL log': await lab.pg.readLog(),
    'audit records': JSON.stringify(audit.records),
    'MCP answers': JSON.stringify(answers),
  };
  expect(outputs['PostgreSQL log']!.length).toBeGreaterThan(0);
  expect(outputs['audit records']!.length).toBeGreaterThan(0);
  expect(vaultAudit.length).toBeGreaterThan(0);
  // The search itself must be able to fail: a planted token in any encoding is found.
  expect(findSecret(`log ${Buffer.from(planted.obo_1 ?? planted.user_access_token!).toString('base64url')}`, planted)).not.toEqual([]);
  expect(findSecret(encodeURIComponent(JSON.stringify({ p: Object.entries(planted).find(([k]) => k.startsWith('db_password'))![1] })), planted)).not.toEqual([]);
  const leaks = Object.entries(outputs).flatMap(([where, text]) => findSecret(text, planted).map((s) => `${s} in ${where}`));
  expect(leaks).toEqual([]);
});
