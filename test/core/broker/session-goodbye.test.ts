/**
 * A call's PostgreSQL sessions end as libpq ends them: Terminate, then the socket closed, without
 * waiting for the server to close its side (PostgreSQL closes it only once the backend process has
 * exited). Against the lab's real PostgreSQL, IdP and Vault stand-in, through a proxy that holds the
 * server's close back: the call answers without that wait, and PostgreSQL's own statistics
 * (pg_stat_database.sessions_abandoned) show every session it started was ended by its Terminate,
 * not by a lost connection.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '../../../lab/fault-proxy.ts';
import { createPostgresConnector } from '../../../main/core/connectors/postgres/connector.ts';
import type { Connector } from '../../../main/core/connectors/types.ts';
import { call, DEMO_POLICY, settled, startBrokerLab, type BrokerLab } from './lab.ts';

let lab: BrokerLab;
let proxy: FaultProxy;
beforeAll(async () => {
  lab = await startBrokerLab();
  proxy = await startFaultProxy({ host: lab.connection.host, port: lab.connection.port });
});
afterAll(async () => {
  await proxy?.stop();
  await lab?.stop();
});

/** How long the proxy holds PostgreSQL's close of a session back. */
const HELD_MS = 5_000;

/** The database's session counts, as PostgreSQL's statistics hold them. */
async function sessions(): Promise<{ sessions: number; abandoned: number }> {
  const [row] = await lab.admin<{ sessions: string; abandoned: string }>(
    'SELECT sessions::text, sessions_abandoned::text AS abandoned FROM pg_stat_database WHERE datname = current_database()',
  );
  return { sessions: Number(row!.sessions), abandoned: Number(row!.abandoned) };
}

/**
 * Waits until no backend matching `where` is left in pg_stat_activity. A backend reports how its
 * session ended (pg_stat_database) before it leaves pg_stat_activity, in the same exit.
 */
async function backendsGone(where: string, params: unknown[] = []): Promise<void> {
  const deadline = Date.now() + HELD_MS * 2;
  while (Date.now() < deadline) {
    const [row] = await lab.admin<{ n: string }>(`SELECT count(*)::text AS n FROM pg_stat_activity WHERE ${where}`, params);
    if (row!.n === '0') return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`backends where ${where} are still there`);
}

describe("a call's PostgreSQL sessions", () => {
  it('end with Terminate and do not wait for the server to close them', async () => {
    const connectors = [createPostgresConnector({ policy: DEMO_POLICY, connection: { ...lab.connection, port: proxy.port } })];
    const { broker, audit } = lab.broker({ connectors });
    // Warm: the first call also pays for the IdP's and Vault's first requests.
    expect((await broker.callTool(call('query', { sql: 'SELECT 1 AS one' }))).isError).toBeFalsy();
    await backendsGone("usename LIKE 'v-%'");
    const before = await sessions();

    proxy.setFault({ kind: 'slow-close', ms: HELD_MS });
    const accepted = proxy.accepted;
    const started = performance.now();
    const r = await broker.callTool(call('query', { sql: 'SELECT id FROM patients ORDER BY id LIMIT 1' }));
    const took = performance.now() - started;
    expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
    // The statement's session and the revocation check's login both went through the proxy.
    expect(proxy.accepted - accepted).toBe(2);
    // Waiting for either close would take HELD_MS.
    expect(took).toBeLessThan(HELD_MS / 2);
    const record = audit.records.at(-1)!;
    expect(record.outcome).toBe('success');
    expect(record.hops!.find((h) => h.name === 'revoke_check')).toMatchObject({ outcome: 'ok' });

    // PostgreSQL's count: the call's session (and the sessions Vault opened) ended, none of them abandoned.
    await backendsGone("usename LIKE 'v-%'");
    const after = await sessions();
    expect(after.sessions).toBeGreaterThan(before.sessions);
    expect(after.abandoned).toBe(before.abandoned);
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
    proxy.setFault(null);
  }, 30_000);

  it('are counted as abandoned by the same statistics when a client drops one without Terminate', async () => {
    // The oracle above can fail: a session whose socket is destroyed is counted in sessions_abandoned.
    const before = await sessions();
    const client = new pg.Client({ connectionString: lab.pg.adminUrl });
    client.on('error', () => {});
    await client.connect();
    const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    client.connection.stream.destroy();
    await backendsGone('pid = $1', [pid]);
    const after = await sessions();
    expect(after.abandoned).toBe(before.abandoned + 1);
  }, 30_000);
});

describe('the revocation check', () => {
  it('gives up within its 2 s when PostgreSQL never answers its login, and records that the role is unknown', async () => {
    const real = createPostgresConnector({ policy: DEMO_POLICY, connection: { ...lab.connection, port: proxy.port } });
    // The statement's session goes through; the check's login meets a PostgreSQL that accepts and never answers.
    const connector: Connector = {
      ...real,
      verifyRevoked: (credential, signal) => {
        proxy.setFault({ kind: 'hang' });
        return real.verifyRevoked!(credential, signal);
      },
    };
    const { broker, audit } = lab.broker({ connectors: [connector] });
    try {
      const started = performance.now();
      const r = await broker.callTool(call('query', { sql: 'SELECT 1 AS one' }));
      const took = performance.now() - started;
      expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
      const check = audit.records.at(-1)!.hops!.find((h) => h.name === 'revoke_check')!;
      expect(check).toMatchObject({ outcome: 'error', code: 'VAULT_REVOKE_FAILED' });
      expect(check.detail).toMatch(/^role unknown after \d+ check\(s\)$/);
      // The bound is the check's, 2 s; each login's own 5 s limit used to run past it.
      expect(check.ms).toBeLessThan(2_300);
      expect(took).toBeLessThan(3_000);
    } finally {
      proxy.setFault(null);
    }
    // Vault's revocation, not the check, is what dropped the role.
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
  }, 30_000);
});
