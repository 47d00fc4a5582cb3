/**
 * Every fault the lab can produce, one at a time, through the broker into the on-disk audit store. The
 * contract in every case: the app answers (isError with a stable code and a sentence a person can act
 * on, or the result when the fault was survivable), exactly one audit record is appended to a chain
 * that still verifies, and no per-call database role or Vault lease is left behind.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import type { AuditRecord } from '../../common/audit-record.ts';
import { createTokenExchanger } from '../../main/core/idp/token-exchange.ts';
import { createVaultClient } from '../../main/core/vault/client.ts';
import type { Connector } from '../../main/core/connectors/types.ts';
import { call, faultLedger, pool, reportCounters, startReliabilityLab, type ReliabilityLab } from './harness.ts';

let r: ReliabilityLab;
const ledger = faultLedger();

beforeAll(async () => {
  r = await startReliabilityLab();
}, 60_000);
afterAll(async () => {
  await reportCounters('faults', { faults: ledger.outcomes() });
  await r?.stop();
});

const text = (res: CallToolResult): string => res.content.map((c) => (c as { text?: string }).text ?? '').join('\n');
const readCall = () => call('query', { sql: 'SELECT id, full_name FROM patients ORDER BY id' });

/**
 * Runs one fault, named once: survived only when every assertion of the contract held. These are set
 * inside the lab's parts in this process (flags, a closed port, a test double), hence `in-process`;
 * test/reliability/process-faults.ts has the faults on real processes and the network.
 */
const fault = (name: string, run: () => Promise<void>): Promise<void> => ledger.run(name, 'in-process', run);

/** Calls once under the fault and checks the contract; returns the one record for further checks. */
async function expectAnswered(request: () => Promise<CallToolResult>, code: string | null): Promise<{ result: CallToolResult; record: AuditRecord }> {
  const before = r.audit.count();
  const result = await request();
  if (code) {
    expect(result.isError, text(result)).toBe(true);
    const message = text(result);
    expect(message).toContain(`[${code}]`);
    // A sentence for a person: more than the code, no stack, no raw library text.
    expect(message.replace(`[${code}]`, '').trim().length).toBeGreaterThan(20);
    expect(message).not.toMatch(/\bat .+\.(ts|js):\d+|ECONNREFUSED|TypeError|undefined/);
  } else {
    expect(result.isError, text(result)).toBeFalsy();
  }
  expect(r.audit.count() - before).toBe(1);
  const record = r.audit.page({ limit: 1 }).records[0]!;
  if (code) expect(record.error?.code).toBe(code);
  expect((await r.audit.verify()).ok).toBe(true);
  expect(await r.settled(8_000)).toEqual({ roles: [], leases: 0 });
  return { result, record };
}

describe('the identity provider failing', () => {
  it('down: IDP_UNAVAILABLE', async () => {
    await fault('identity provider address with nothing listening', async () => {
      const down = createTokenExchanger({ issuer: 'http://127.0.0.1:9', clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true, timeoutMs: 500 });
      await expectAnswered(() => r.broker({ idp: down }).callTool(readCall()), 'IDP_UNAVAILABLE');
    });
  });

  // 500 and 503 are one fault (a server error), counted once.
  for (const [what, name, f, code] of [
    ['answering 500', 'identity provider answering a server error', { status: 500 }, 'IDP_UNAVAILABLE'],
    ['answering 503', 'identity provider answering a server error', { status: 503 }, 'IDP_UNAVAILABLE'],
    ['too slow', 'identity provider slower than its time-out', { delayMs: 1_000 }, 'IDP_UNAVAILABLE'],
    ['answering a body that is not JSON', 'identity provider answering a body that is not JSON', { garbage: true }, 'IDP_BAD_RESPONSE'],
  ] as const) {
    it(`${what}: ${code}`, async () => {
      await fault(name, async () => {
        const quick = createTokenExchanger({ issuer: r.lab.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true, timeoutMs: 400 });
        r.lab.idp.setFault(f);
        try {
          await expectAnswered(() => r.broker({ idp: quick }).callTool(readCall()), code);
        } finally {
          r.lab.idp.setFault(null);
        }
      });
    });
  }
});

describe('Vault failing', () => {
  it('sealed: VAULT_SEALED', async () => {
    await fault('Vault sealed', async () => {
      r.lab.vault.seal();
      try {
        await expectAnswered(() => r.broker().callTool(readCall()), 'VAULT_SEALED');
      } finally {
        r.lab.vault.unseal();
      }
    });
  });

  it('403 on the credential request: VAULT_PERMISSION_DENIED, and the login token minted before it is revoked', async () => {
    await fault('Vault answering 403 on the credential request', async () => {
      r.lab.vault.setFault({ kind: 'http', path: 'database/creds/*', status: 403, errors: ['permission denied'] });
      try {
        const { record } = await expectAnswered(() => r.broker().callTool(readCall()), 'VAULT_PERMISSION_DENIED');
        expect(record.hops.find((h) => h.name === 'revoke')?.outcome).toBe('ok');
      } finally {
        r.lab.vault.setFault(null);
      }
    });
  });

  it('500 on login: VAULT_UNAVAILABLE', async () => {
    await fault('Vault answering 500 on login', async () => {
      r.lab.vault.setFault({ kind: 'http', path: 'auth/jwt/login', status: 500, errors: ['internal error'] });
      try {
        await expectAnswered(() => r.broker().callTool(readCall()), 'VAULT_UNAVAILABLE');
      } finally {
        r.lab.vault.setFault(null);
      }
    });
  });

  it('too slow: VAULT_UNAVAILABLE', async () => {
    await fault('Vault slower than its time-out', async () => {
      const impatient = createVaultClient({ address: r.lab.vaultAddr, timeoutMs: 300 });
      r.lab.vault.setLatency(600);
      try {
        await expectAnswered(() => r.broker({ vault: impatient }).callTool(readCall()), 'VAULT_UNAVAILABLE');
      } finally {
        r.lab.vault.setLatency(0);
        await impatient.close();
      }
    });
  });

  it('revocation failing once: retried, recorded with its attempts, and the role is gone', async () => {
    await fault('Vault revocation failing once', async () => {
      r.lab.vault.setFault({ kind: 'revoke', times: 1 });
      try {
        const { record } = await expectAnswered(() => r.broker().callTool(readCall()), null);
        const revoke = record.hops.find((h) => h.name === 'revoke')!;
        expect(revoke.detail).toMatch(/^attempts=[2-9]/);
      } finally {
        r.lab.vault.setFault(null);
      }
    });
  });

  it('revocation failing every time: the answer still comes, the record says revocation was not confirmed, and Vault removes the role when it retries', async () => {
    await fault('Vault revocation failing every time', async () => {
      r.lab.vault.setFault({ kind: 'revoke', times: 4 });
      try {
        const before = r.audit.count();
        const result = await r.broker().callTool(readCall());
        expect(result.isError, text(result)).toBeFalsy();
        expect(r.audit.count() - before).toBe(1);
        const record = r.audit.page({ limit: 1 }).records[0]!;
        const revokeHops = record.hops.filter((h) => h.name === 'revoke' || h.name === 'revoke_check');
        expect(revokeHops.some((h) => h.outcome === 'error'), JSON.stringify(revokeHops)).toBe(true);
        expect(record.summary).toContain('revocation not confirmed');
        // The stand-in retries a failed lease revocation with back-off (as Vault's expiration manager does).
        expect(await r.settled(15_000)).toEqual({ roles: [], leases: 0 });
      } finally {
        r.lab.vault.setFault(null);
      }
    });
  });
});

describe('PostgreSQL failing', () => {
  it('down (nothing listening): DB_UNAVAILABLE, and the minted role is still revoked', async () => {
    await fault('PostgreSQL address with nothing listening', async () => {
      const broker = r.broker({ connectors: [r.postgresConnector({ port: 9, connectTimeoutMs: 500 })] });
      await expectAnswered(() => broker.callTool(readCall()), 'DB_UNAVAILABLE');
    });
  });

  it('authentication failure: DB_AUTH_FAILED', async () => {
    await fault('PostgreSQL refusing the credential', async () => {
      const real = r.postgresConnector();
      // Test double for a credential corrupted in transit: the real connector, handed a wrong password.
      const corrupting: Connector = {
        ...real,
        execute: (ctx) => real.execute({ ...ctx, credential: { kind: 'database', username: (ctx.credential as { username: string }).username, password: 'not-the-password' } }),
      };
      await expectAnswered(() => r.broker({ connectors: [corrupting] }).callTool(readCall()), 'DB_AUTH_FAILED');
    });
  });

  it('statement time-out: DB_TIMEOUT, and the session ends with the role', async () => {
    await fault('PostgreSQL statement time-out', async () => {
      const broker = r.broker({ connectors: [r.postgresConnector({ statementTimeoutMs: 200 })] });
      await expectAnswered(() => broker.callTool(call('query', { sql: 'SELECT pg_sleep(5), id FROM patients' })), 'DB_TIMEOUT');
      expect(await r.admin("SELECT 1 FROM pg_stat_activity WHERE usename LIKE 'v-%'")).toEqual([]);
    });
  });

  it('an answer far larger than the policy allows: RESULT_TOO_LARGE, the session closed, and the next call answered', async () => {
    await fault('PostgreSQL answering 64 MB to one statement', async () => {
      const broker = r.broker();
      await expectAnswered(() => broker.callTool(call('query', { sql: "SELECT repeat('x', 64000000) AS big" })), 'RESULT_TOO_LARGE');
      expect(await r.admin("SELECT 1 FROM pg_stat_activity WHERE usename LIKE 'v-%'")).toEqual([]);
      await expectAnswered(() => broker.callTool(readCall()), null);
    });
  });
});

describe('the identity provider rotating its signing key mid-run (last: the rotation outlives the test)', () => {
  let afterRotation: CallToolResult[] = [];

  it('answers every one of 64 concurrent calls across the rotation, records each once, and leaves nothing behind', async () => {
    await fault('identity provider signing key rotated mid-run', async () => {
      const exchanger = createTokenExchanger({ issuer: r.lab.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true, timeoutMs: 3_000 });
      const broker = r.broker({ idp: exchanger });
      expect((await broker.callTool(readCall())).isError).toBeFalsy(); // the JWKS is fetched and cached
      const before = r.audit.count();
      let rotated = false;
      const results = await pool(64, 16, async (i) => {
        if (i === 24 && !rotated) {
          rotated = true;
          await r.lab.idp.rotateKeys();
        }
        return broker.callTool(readCall());
      });
      expect(rotated).toBe(true);
      // Each call either ran or failed closed with a reason; none hung, none went unrecorded.
      for (const res of results) if (res.isError) expect(text(res)).toMatch(/\[OBO_INVALID\]$/);
      expect(r.audit.count() - before).toBe(64);
      expect((await r.audit.verify()).ok).toBe(true);
      expect(await r.settled(8_000)).toEqual({ roles: [], leases: 0 });
      afterRotation = results.slice(40);
    });
  });

  it('lets Vault accept OBOs signed with the new key (a core that fetches the JWKS after the rotation succeeds)', async () => {
    await fault('identity provider signing key rotated mid-run', async () => {
      const fresh = createTokenExchanger({ issuer: r.lab.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true, timeoutMs: 3_000 });
      await expectAnswered(() => r.broker({ idp: fresh }).callTool(readCall()), null);
    });
  });

  // The token exchanger refetches the JWKS on an unknown `kid` (at most once per second, main/core/idp/jwks.ts),
  // so calls after a rotation succeed without waiting out jose's 30 s cooldown.
  it('recovers within the same run, so calls after the rotation succeed with the already-running core', () => {
    expect(afterRotation.length).toBeGreaterThan(0);
    expect(afterRotation.filter((x) => x.isError).map(text)).toEqual([]);
  });

  it('verifies the very first OBO signed after a rotation with a core whose JWKS was fetched a moment before', async () => {
    await fault('identity provider signing key rotated mid-run', async () => {
      const running = createTokenExchanger({ issuer: r.lab.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true, timeoutMs: 3_000 });
      const broker = r.broker({ idp: running });
      expect((await broker.callTool(readCall())).isError).toBeFalsy(); // the JWKS is fetched just now
      await r.lab.idp.rotateKeys();
      await expectAnswered(() => broker.callTool(readCall()), null);
    });
  });
});
