import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startBrokerLab, call, settled, DEMO_POLICY, type BrokerLab } from './lab.ts';
import { FaultProxy, type MemoryAudit } from './fixtures.ts';
import { createTokenExchanger } from '../../../main/core/idp/token-exchange.ts';
import { createVaultClient } from '../../../main/core/vault/client.ts';

interface VaultAuditLine {
  type: string;
  error?: string;
  request?: { path?: string };
  auth?: { client_token?: string };
}
import { createPostgresConnector } from '../../../main/core/connectors/postgres/connector.ts';
import type { Connector } from '../../../main/core/connectors/types.ts';
import type { Approver } from '../../../main/core/broker/index.ts';

let lab: BrokerLab;
let vaultProxy: FaultProxy;

beforeAll(async () => {
  lab = await startBrokerLab();
  vaultProxy = await FaultProxy.start(lab.vault.addr);
});
afterAll(async () => {
  await vaultProxy?.stop();
  await lab?.stop();
});

const text = (r: CallToolResult): string => r.content.map((c) => (c as { text?: string }).text ?? '').join('\n');

/** The contract for every failure: isError with the code, exactly one audit record, nothing left behind. */
async function expectCleanFailure(result: CallToolResult, audit: MemoryAudit, code: string): Promise<void> {
  expect(result.isError, text(result)).toBe(true);
  expect(text(result)).toContain(`[${code}]`);
  expect(audit.records).toHaveLength(1);
  expect(audit.records[0]!.error?.code).toBe(code);
  expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
}

const readCall = () => call('query', { sql: 'SELECT id FROM patients' });
const alreadyAborted = (): AbortSignal => AbortSignal.abort();
const cancelled = (ms: number) => {
  const c = new AbortController();
  setTimeout(() => c.abort(), ms);
  return c.signal;
};

describe('the identity provider failing', () => {
  it('IdP down → IDP_UNAVAILABLE', async () => {
    const down = createTokenExchanger({ issuer: 'http://127.0.0.1:9', clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true, timeoutMs: 500 });
    const { broker, audit } = lab.broker({ idp: down });
    await expectCleanFailure(await broker.callTool(readCall()), audit, 'IDP_UNAVAILABLE');
  });

  it('IdP answering 500 → IDP_UNAVAILABLE; garbage → IDP_BAD_RESPONSE; too slow → IDP_UNAVAILABLE', async () => {
    const quick = createTokenExchanger({ issuer: lab.idp.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true, timeoutMs: 400 });
    try {
      for (const [fault, code] of [
        [{ status: 500 }, 'IDP_UNAVAILABLE'],
        [{ garbage: true }, 'IDP_BAD_RESPONSE'],
        [{ delayMs: 1_000 }, 'IDP_UNAVAILABLE'],
      ] as const) {
        lab.idp.setFault(fault);
        const { broker, audit } = lab.broker({ idp: quick });
        await expectCleanFailure(await broker.callTool(readCall()), audit, code);
      }
    } finally {
      lab.idp.setFault(null);
    }
  });
});

describe('Vault failing', () => {
  it('sealed → VAULT_SEALED', async () => {
    lab.vault.seal();
    try {
      const { broker, audit } = lab.broker();
      await expectCleanFailure(await broker.callTool(readCall()), audit, 'VAULT_SEALED');
    } finally {
      lab.vault.unseal();
    }
  });

  it('403 on the credential request → VAULT_PERMISSION_DENIED, and the login token is revoked', async () => {
    lab.vault.setFault({ kind: 'http', path: 'database/creds/*', status: 403, errors: ['permission denied'] });
    try {
      const { broker, audit } = lab.broker();
      await expectCleanFailure(await broker.callTool(readCall()), audit, 'VAULT_PERMISSION_DENIED');
      expect(audit.records[0]!.hops!.find((h) => h.name === 'revoke')?.outcome).toBe('ok');
    } finally {
      lab.vault.setFault(null);
    }
  });

  it('too slow → VAULT_UNAVAILABLE', async () => {
    const slowClient = createVaultClient({ address: lab.vault.addr, timeoutMs: 300 });
    lab.vault.setLatency(600);
    try {
      const { broker, audit } = lab.broker({ vault: slowClient });
      await expectCleanFailure(await broker.callTool(readCall()), audit, 'VAULT_UNAVAILABLE');
    } finally {
      lab.vault.setLatency(0);
      await slowClient.close();
    }
  });

  it('a login Vault answers after the call stopped waiting → VAULT_UNAVAILABLE, and the token it minted is revoked then', async () => {
    // Vault mints the token at once; its answer reaches the client 1.2 s later, past its 400 ms.
    vaultProxy.set(/\/v1\/auth\/jwt\/login/, { kind: 'late-answer', ms: 1_200 });
    const vault = createVaultClient({ address: vaultProxy.url, timeoutMs: 400 });
    const auditLines = () => readFileSync(lab.vaultAuditLogPath, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as VaultAuditLine);
    const before = auditLines().length;
    try {
      const { broker, audit } = lab.broker({ vault });
      await expectCleanFailure(await broker.callTool(readCall()), audit, 'VAULT_UNAVAILABLE');
      expect(audit.records[0]!.hops!.find((h) => h.name === 'vault_login')).toMatchObject({ outcome: 'error', code: 'VAULT_UNAVAILABLE' });
      // Vault's audit log: the token in its answer to the login (HMAC'd as Vault logs it) is the one
      // that asks revoke-self, and Vault accepts.
      let minted: string | undefined;
      let revoked = false;
      const deadline = Date.now() + 6_000;
      while (!revoked && Date.now() < deadline) {
        const lines = auditLines().slice(before);
        minted ??= lines.find((l) => l.type === 'response' && l.request?.path === 'auth/jwt/login' && l.auth?.client_token)?.auth!.client_token;
        revoked = minted !== undefined && lines.some((l) => l.type === 'response' && l.request?.path === 'auth/token/revoke-self' && l.auth?.client_token === minted && !l.error);
        if (!revoked) await new Promise((w) => setTimeout(w, 50));
      }
      expect(minted).toBeDefined();
      expect(revoked).toBe(true);
    } finally {
      vaultProxy.clear();
      await vault.close();
    }
  });

  it('a failing revocation is retried, bounded, and recorded', async () => {
    lab.vault.setFault({ kind: 'revoke', times: 1 });
    try {
      const { broker, audit } = lab.broker();
      const r = await broker.callTool(readCall());
      expect(r.isError).toBeFalsy();
      const revoke = audit.records[0]!.hops!.find((h) => h.name === 'revoke')!;
      expect(revoke.outcome).toBe('ok');
      expect(revoke.detail).toMatch(/^attempts=2/);
      expect(audit.records[0]!.hops!.find((h) => h.name === 'revoke_check')?.outcome).toBe('ok');
      expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
    } finally {
      lab.vault.setFault(null);
    }
  });
});

describe('PostgreSQL failing', () => {
  it('down → DB_UNAVAILABLE (the minted role is still revoked)', async () => {
    const nowhere = createPostgresConnector({ policy: DEMO_POLICY, connection: { ...lab.connection, port: 9, connectTimeoutMs: 500 } });
    const { broker, audit } = lab.broker({ connectors: [nowhere] });
    await expectCleanFailure(await broker.callTool(readCall()), audit, 'DB_UNAVAILABLE');
  });

  it('authentication failure → DB_AUTH_FAILED', async () => {
    const real = createPostgresConnector({ policy: DEMO_POLICY, connection: lab.connection });
    // Test double for a credential corrupted in transit: the real connector, given a wrong password.
    const corrupting: Connector = {
      ...real,
      execute: (ctx) => real.execute({ ...ctx, credential: { kind: 'database', username: (ctx.credential as { username: string }).username, password: 'wrong-password' } }),
    };
    const { broker, audit } = lab.broker({ connectors: [corrupting] });
    await expectCleanFailure(await broker.callTool(readCall()), audit, 'DB_AUTH_FAILED');
  });

  it('statement time-out → DB_TIMEOUT', async () => {
    const strict = createPostgresConnector({ policy: { ...DEMO_POLICY, limits: { ...DEMO_POLICY.limits, statementTimeoutMs: 200 } }, connection: lab.connection });
    const { broker, audit } = lab.broker({ connectors: [strict] });
    await expectCleanFailure(await broker.callTool(call('query', { sql: 'SELECT pg_sleep(5), id FROM patients' })), audit, 'DB_TIMEOUT');
  });
});

describe('bad input', () => {
  for (const [what, args, code] of [
    ['a write sent to query', { sql: "UPDATE notes SET body = 'x' WHERE id = 1" }, 'SQL_NOT_READ_ONLY'],
    ['SQL that does not parse', { sql: 'SELEC id FROM patients' }, 'SQL_UNPARSABLE'],
    ['two statements', { sql: 'SELECT 1 FROM patients; SELECT 2 FROM notes' }, 'SQL_MULTI_STATEMENT'],
    ['arguments the schema refuses', { sql: 'SELECT 1 FROM patients', limit: 5 }, 'INPUT_INVALID'],
  ] as const) {
    it(`${what} → ${code}, with no exchange`, async () => {
      const { broker, audit } = lab.broker();
      const before = lab.alice.calls;
      await expectCleanFailure(await broker.callTool(call('query', args)), audit, code);
      expect(lab.alice.calls).toBe(before);
    });
  }

  it('an unknown tool is a protocol error, still recorded once', async () => {
    const { broker, audit } = lab.broker();
    await expect(broker.callTool(call('no_such_tool', {}))).rejects.toMatchObject({ code: 'TOOL_UNKNOWN' });
    expect(audit.records).toHaveLength(1);
  });
});

describe('cancellation in each hop revokes whatever was minted', () => {
  it('while waiting for approval', async () => {
    const waiting: Approver = { approve: (_p, _c, signal) => new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason))) };
    const { broker, audit } = lab.broker({ approver: waiting });
    await expectCleanFailure(await broker.callTool(call('execute', { sql: 'DELETE FROM notes WHERE id = -1' }, { signal: cancelled(100) })), audit, 'CANCELLED');
  });

  it('during the token exchange', async () => {
    lab.idp.setFault({ delayMs: 1_500 });
    try {
      const { broker, audit } = lab.broker();
      const started = Date.now();
      await expectCleanFailure(await broker.callTool(call('query', { sql: 'SELECT id FROM patients' }, { signal: cancelled(100) })), audit, 'CANCELLED');
      expect(Date.now() - started).toBeLessThan(1_400);
    } finally {
      lab.idp.setFault(null);
    }
  });

  it('while waiting for the push step-up', async () => {
    const { broker, audit } = lab.broker({ approver: { approve: async () => ({ outcome: 'approved' }) } });
    await expectCleanFailure(
      await broker.callTool(call('query', { sql: 'SELECT id FROM patients', include_sensitive: true }, { signal: cancelled(200) })),
      audit,
      'CANCELLED',
    );
    for (const p of lab.idp.push.pending()) lab.idp.push.deny(p.id);
  });

  it('during the Vault login (the token it mints is revoked)', async () => {
    const controller = new AbortController();
    // The abort lands while Vault is handling the login.
    vaultProxy.set(/\/v1\/auth\/jwt\/login/, { kind: 'delay', ms: 300 }, () => setTimeout(() => controller.abort(), 50));
    const proxied = createVaultClient({ address: vaultProxy.url, timeoutMs: 10_000 });
    try {
      const { broker, audit } = lab.broker({ vault: proxied });
      await expectCleanFailure(await broker.callTool(call('query', { sql: 'SELECT id FROM patients' }, { signal: controller.signal })), audit, 'CANCELLED');
      expect(vaultProxy.hits).toBe(1);
      expect(audit.records[0]!.hops!.find((h) => h.name === 'vault_login')?.outcome).toBe('ok');
      expect(audit.records[0]!.hops!.find((h) => h.name === 'revoke')?.outcome).toBe('ok');
    } finally {
      vaultProxy.clear();
      await proxied.close();
    }
  });

  it('during the credential request (the role it creates is dropped)', async () => {
    const controller = new AbortController();
    vaultProxy.set(/\/v1\/database\/creds\//, { kind: 'delay', ms: 300 }, () => setTimeout(() => controller.abort(), 50));
    const proxied = createVaultClient({ address: vaultProxy.url, timeoutMs: 10_000 });
    try {
      const { broker, audit } = lab.broker({ vault: proxied });
      await expectCleanFailure(await broker.callTool(call('query', { sql: 'SELECT id FROM patients' }, { signal: controller.signal })), audit, 'CANCELLED');
      const hops = audit.records[0]!.hops!;
      expect(hops.find((h) => h.name === 'vault_creds')?.outcome).toBe('ok');
      expect(hops.find((h) => h.name === 'revoke_check')?.outcome).toBe('ok');
    } finally {
      vaultProxy.clear();
      await proxied.close();
    }
  });

  it('while the statement runs (the session ends with the role)', async () => {
    const { broker, audit } = lab.broker();
    const started = Date.now();
    await expectCleanFailure(await broker.callTool(call('query', { sql: 'SELECT pg_sleep(4), id FROM patients' }, { signal: cancelled(300) })), audit, 'CANCELLED');
    expect(Date.now() - started).toBeLessThan(3_000);
    const sessions = await lab.admin("SELECT 1 FROM pg_stat_activity WHERE usename LIKE 'v-%'");
    expect(sessions).toHaveLength(0);
  });

  it('an already-cancelled call does nothing at all', async () => {
    const { broker, audit } = lab.broker();
    const before = lab.alice.calls;
    await expectCleanFailure(await broker.callTool(call('query', { sql: 'SELECT id FROM patients' }, { signal: alreadyAborted() })), audit, 'CANCELLED');
    expect(lab.alice.calls).toBe(before);
  });
});
