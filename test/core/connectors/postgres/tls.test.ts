/**
 * TLS to PostgreSQL at each sslmode, against the lab's real PostgreSQL: one cluster without TLS and one
 * serving a certificate for 127.0.0.1 signed by a CA made for the run. Statements go through the
 * connector's own execution path (runStatement) as the superuser.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, type LabPostgres } from '../../../../lab/postgres.ts';
import { AppError } from '../../../../common/errors.ts';
import { runStatement, type PostgresConnection } from '../../../../main/core/connectors/postgres/connector.ts';
import { planPostgresCall } from '../../../../main/core/connectors/postgres/plan.ts';
import { effectiveSslMode, postgresSsl, type PostgresTlsConfig } from '../../../../main/core/connectors/postgres/tls.ts';
import { parseAppConfig } from '../../../../main/core/config/config.ts';
import { parsePolicy, type PostgresPolicy } from '../../../../main/core/policy/policy.ts';

const POLICY = parsePolicy(readFileSync(new URL('../../../../main/core/policy/demo-clinic.policy.jsonc', import.meta.url), 'utf8')).postgres as PostgresPolicy;

let plain: LabPostgres;
let tls: LabPostgres;
let otherCa: LabPostgres;
beforeAll(async () => {
  [plain, tls, otherCa] = await Promise.all([startPostgres(), startPostgres({ tls: true }), startPostgres({ tls: true })]);
}, 60_000);
afterAll(async () => {
  await Promise.all([plain?.stop(), tls?.stop(), otherCa?.stop()]);
});

/** Runs `SELECT ssl FROM pg_stat_ssl` for this very session over a connection configured as `config`. */
async function sessionUsesTls(lab: LabPostgres, config: Omit<PostgresTlsConfig, 'host'> & { host?: string }): Promise<boolean> {
  const host = config.host ?? lab.host;
  const admin = new URL(lab.adminUrl);
  const connection: PostgresConnection = { host, port: lab.port, database: lab.database, ssl: await postgresSsl({ ...config, host }), connectTimeoutMs: 5_000 };
  // The classifier rightly refuses catalog views to a tool call; this test's subject is the connection,
  // so the planned details of a plain read carry the statement that asks PostgreSQL about this session.
  const { details } = await planPostgresCall(POLICY, 'query', { sql: 'SELECT 1' });
  const app = `tls-test-${randomUUID()}`;
  const sql = 'SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a ON a.pid = s.pid WHERE a.application_name = $1';
  const result = await runStatement(connection, decodeURIComponent(admin.username), decodeURIComponent(admin.password), app, { ...details, sql, params: [app] }, new AbortController().signal);
  return result.rows[0]?.ssl === true;
}

async function failure(work: Promise<unknown>): Promise<AppError> {
  try {
    await work;
  } catch (error) {
    if (error instanceof AppError) return error;
    throw error;
  }
  throw new Error('expected a failure');
}

describe('sslmode', () => {
  it('defaults to verify-full off loopback and to disable on loopback', () => {
    expect(effectiveSslMode({ host: 'db.example.com' })).toBe('verify-full');
    expect(effectiveSslMode({ host: '10.0.0.5' })).toBe('verify-full');
    expect(effectiveSslMode({ host: '127.0.0.1' })).toBe('disable');
    expect(effectiveSslMode({ host: '::1' })).toBe('disable');
    expect(effectiveSslMode({ host: 'localhost' })).toBe('disable');
    expect(effectiveSslMode({ host: '127.0.0.1', sslmode: 'verify-full' })).toBe('verify-full');
  });

  it('verify-full against a server without TLS fails closed with the reason, never falling back to plain text', async () => {
    const error = await failure(sessionUsesTls(plain, { sslmode: 'verify-full', sslrootcert: tls.caFile! }));
    expect(error.code).toBe('DB_UNAVAILABLE');
    expect(error.message).toMatch(/TLS connection the configuration requires \(postgres\.sslmode\)/);
    expect(await failure(sessionUsesTls(plain, { sslmode: 'require' }))).toMatchObject({ code: 'DB_UNAVAILABLE' });
  });

  it('verify-full with the CA that signed the server certificate runs the statement over TLS', async () => {
    expect(await sessionUsesTls(tls, { sslmode: 'verify-full', sslrootcert: tls.caFile! })).toBe(true);
    expect(await sessionUsesTls(tls, { sslmode: 'verify-ca', sslrootcert: tls.caFile! })).toBe(true);
    expect(await sessionUsesTls(tls, { sslmode: 'require' })).toBe(true);
    expect(await sessionUsesTls(tls, { sslmode: 'disable' })).toBe(false);
  });

  it('verify-full and verify-ca refuse a certificate from another CA, and verify-full without a CA file refuses the lab’s private one', async () => {
    const wrong = await failure(sessionUsesTls(tls, { sslmode: 'verify-full', sslrootcert: otherCa.caFile! }));
    expect(wrong.code).toBe('DB_UNAVAILABLE');
    expect(wrong.message).toMatch(/\((SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY)\)/);
    expect(await failure(sessionUsesTls(tls, { sslmode: 'verify-ca', sslrootcert: otherCa.caFile! }))).toMatchObject({ code: 'DB_UNAVAILABLE' });
    expect(await failure(sessionUsesTls(tls, { sslmode: 'verify-full' }))).toMatchObject({ code: 'DB_UNAVAILABLE' });
  });

  it('verify-full refuses a certificate for another name that verify-ca accepts', async () => {
    // The certificate names IP 127.0.0.1 only; "localhost" reaches the same server under another name.
    const error = await failure(sessionUsesTls(tls, { host: 'localhost', sslmode: 'verify-full', sslrootcert: tls.caFile! }));
    expect(error.message).toContain('(ERR_TLS_CERT_ALTNAME_INVALID)');
    expect(await sessionUsesTls(tls, { host: 'localhost', sslmode: 'verify-ca', sslrootcert: tls.caFile! })).toBe(true);
  });

  it('is read from the configuration: an unknown mode, and verify-ca without a CA file, are refused by name', () => {
    const base = {
      idp: { issuer: 'https://idp.example', clientId: 'c' },
      vault: { address: 'https://vault.example' },
      policyFile: 'p.jsonc',
    };
    const pg = { host: 'db.example.com', port: 5432, database: 'clinic' };
    expect(parseAppConfig({ ...base, postgres: { ...pg, sslmode: 'verify-full', sslrootcert: '/etc/ca.pem' } }).postgres).toMatchObject({ sslmode: 'verify-full' });
    expect(() => parseAppConfig({ ...base, postgres: { ...pg, sslmode: 'prefer' } })).toThrow(/postgres\.sslmode/);
    expect(() => parseAppConfig({ ...base, postgres: { ...pg, sslmode: 'verify-ca' } })).toThrow(/postgres\.sslrootcert/);
  });
});
