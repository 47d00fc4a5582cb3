/** The database as the doctor checks it: reachable at all, then a `SELECT 1` with a per-call credential. */
import { connect } from 'node:net';
import pg from 'pg';
import type { AppConfig } from '../config/config.ts';
import type { AddFinding } from './types.ts';

type Postgres = NonNullable<AppConfig['postgres']>;

export async function checkDatabaseReachable(postgres: Postgres, timeoutMs: number, add: AddFinding): Promise<void> {
  const reachable = await tcpReachable(postgres.host, postgres.port, timeoutMs);
  add(
    reachable
      ? {
          party: 'database',
          check: 'reachable',
          status: 'ok',
          says: `PostgreSQL at ${postgres.host}:${postgres.port} accepts connections.`,
        }
      : {
          party: 'database',
          check: 'reachable',
          status: 'fail',
          says: `PostgreSQL at ${postgres.host}:${postgres.port} does not accept connections.`,
          fix: 'Check postgres.host and postgres.port, and that the database is running.',
        },
  );
}

/** Connects with the credential Vault minted for `vaultRole` and runs `SELECT 1`; true when it ran. */
export async function selectOneAs(
  postgres: Postgres,
  creds: { username: string; password: string },
  vaultRole: string,
  ssl: pg.ClientConfig['ssl'] | undefined,
  timeoutMs: number,
  add: AddFinding,
): Promise<boolean> {
  const client = new pg.Client({
    ...postgres,
    user: creds.username,
    password: creds.password,
    ssl,
    connectionTimeoutMillis: timeoutMs,
  });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
  } catch (error) {
    add({
      party: 'database',
      check: `connect as ${vaultRole}`,
      status: 'fail',
      says: `Vault minted a ${vaultRole} credential but PostgreSQL refused it (${(error as { code?: string }).code ?? 'no code'}).`,
      fix: "Check the Vault database connection's host and the role's creation statements (docs/vault.md §3).",
    });
    return false;
  } finally {
    await client.end().catch(() => {});
  }
  add({
    party: 'database',
    check: `connect as ${vaultRole}`,
    status: 'ok',
    says: `A per-call ${vaultRole} credential from Vault ran SELECT 1 on ${postgres.database}.`,
  });
  return true;
}

function tcpReachable(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}
