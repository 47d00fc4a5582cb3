import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { CryptoKey, JWK } from 'jose';
import pg from 'pg';
import { Agent } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres } from '../../lab/postgres.ts';
import type { LabPostgres } from '../../lab/postgres.ts';
import { startVault } from '../../lab/vault/index.ts';
import type { LabVault } from '../../lab/vault/index.ts';
import { configureLabVault, DATABASE_MOUNT, VAULT_AUDIENCE } from '../../lab/vault/lab-config.ts';

const ISSUER = 'http://127.0.0.1:1/test-issuer';
const API_KEY = `lab-api-key-${randomUUID()}`;

interface SigningKey {
  kid: string;
  privateKey: CryptoKey;
  jwk: JWK;
}

let db: LabPostgres;
let vault: LabVault;
let jwks: Server;
let auditDir: string;
let currentKeys: SigningKey[] = [];

async function newKey(): Promise<SigningKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const kid = randomUUID();
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

/** An OBO-shaped token as the IdP mints it: 60 s, aud countersign-vault, one vault_role. */
async function obo(claims: Record<string, unknown> = {}, key: SigningKey = currentKeys[0]!): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const body: Record<string, unknown> = {
    iss: ISSUER,
    sub: 'alice-sub',
    aud: VAULT_AUDIENCE,
    client_id: 'countersign-desktop',
    act: { sub: 'countersign-desktop' },
    jti: randomUUID(),
    iat: now,
    exp: now + 60,
    vault_role: 'clinic-read',
    ...claims,
  };
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
  return new SignJWT(body).setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'JWT' }).sign(key.privateKey);
}

// Vault's JSON answers are read field by field in assertions; a schema per endpoint would only restate them.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = any;

async function call(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; json: Json; ms: number }> {
  const t0 = Date.now();
  const res = await fetch(`${vault.addr}/v1/${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { 'x-vault-token': token } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : null, ms: Date.now() - t0 };
}

async function login(role: string, jwt: string): Promise<{ status: number; json: Json }> {
  return call('POST', 'auth/jwt/login', { role, jwt });
}

async function loginToken(role: string, claims: Record<string, unknown> = {}): Promise<string> {
  const r = await login(role, await obo({ vault_role: role, ...claims }));
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json.auth.client_token as string;
}

function dbUrl(username: string, password: string): string {
  return `postgresql://${encodeURIComponent(username)}:${encodeURIComponent(password)}@127.0.0.1:${db.port}/clinic`;
}

async function query(url: string, sql: string, applicationName = 'vault-test'): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: url, application_name: applicationName });
  await c.connect();
  try {
    return await c.query(sql);
  } finally {
    await c.end();
  }
}

async function roleExists(name: string): Promise<boolean> {
  const r = await new pg.Client({ connectionString: db.adminUrl });
  await r.connect();
  try {
    const q = await r.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name]);
    return q.rowCount === 1;
  } finally {
    await r.end();
  }
}

async function until(cond: () => Promise<boolean>, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await cond()) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return cond();
}

beforeAll(async () => {
  currentKeys = [await newKey()];
  jwks = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ keys: currentKeys.map((k) => k.jwk) }));
  });
  await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', () => r()));
  auditDir = await mkdtemp(join(tmpdir(), 'countersign-vault-audit-'));
  db = await startPostgres();
  vault = await startVault({ auditLogPath: join(auditDir, 'audit.log') });
  await configureLabVault({
    addr: vault.addr,
    token: vault.rootToken,
    issuer: ISSUER,
    jwksUrl: `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks`,
    postgres: { host: '127.0.0.1', port: db.port, database: 'clinic', username: db.managementUser, password: db.managementPassword },
    apiKey: API_KEY,
  });
});

afterAll(async () => {
  await vault?.stop();
  await db?.stop();
  await new Promise<void>((r) => (jwks ? jwks.close(() => r()) : r()));
  if (auditDir) await rm(auditDir, { recursive: true, force: true });
});

describe('Vault stand-in configured like the lab', () => {
  it('logs in with a valid OBO, mints a database role that connects and sees only what clinic_reader may', async () => {
    const token = await loginToken('clinic-read');
    const creds = await call('GET', `${DATABASE_MOUNT}/creds/clinic-read`, undefined, token);
    expect(creds.status).toBe(200);
    expect(creds.json.lease_id).toMatch(/^database\/creds\/clinic-read\/[A-Za-z0-9]{24}$/);
    expect(creds.json.lease_duration).toBe(60);
    const { username, password } = creds.json.data as { username: string; password: string };
    expect(username).toMatch(/^v-jwt-alic-clinic-r-[A-Za-z0-9]{20}-\d{10}$/);
    expect(password).toMatch(/^[A-Za-z0-9]{20}$/);
    const visible = await query(dbUrl(username, password), 'SELECT count(*)::int AS n, count(*) FILTER (WHERE vip)::int AS vip FROM patients');
    expect(visible.rows[0]).toEqual({ n: 10, vip: 0 });
    await expect(query(dbUrl(username, password), `UPDATE appointments SET status = 'cancelled' WHERE id = 2`)).rejects.toMatchObject({ code: '42501' });
    await call('POST', 'auth/token/revoke-self', undefined, token);
  });

  it('gives clinic-sensitive roles the VIP rows and clinic-write roles bounded writes', async () => {
    const sensitive = await loginToken('clinic-sensitive');
    const s = (await call('GET', `${DATABASE_MOUNT}/creds/clinic-sensitive`, undefined, sensitive)).json.data;
    expect((await query(dbUrl(s.username, s.password), 'SELECT count(*)::int AS n FROM patients WHERE vip')).rows[0].n).toBe(2);
    const writer = await loginToken('clinic-write');
    const w = (await call('GET', `${DATABASE_MOUNT}/creds/clinic-write`, undefined, writer)).json.data;
    expect((await query(dbUrl(w.username, w.password), `UPDATE appointments SET status = 'completed' WHERE id = 3`)).rowCount).toBe(1);
    await call('POST', 'auth/token/revoke-self', undefined, sensitive);
    await call('POST', 'auth/token/revoke-self', undefined, writer);
  });

  it('rejects a token signed by another key with Vault\'s "error validating token"', async () => {
    const r = await login('clinic-read', await obo({}, await newKey()));
    expect(r.status).toBe(400);
    expect(r.json.errors[0]).toMatch(/^error validating token: /);
  });

  it('rejects an unsigned (alg none) token and an HS256 token keyed with the public JWK', async () => {
    const enc = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
    const claims = JSON.parse(Buffer.from((await obo()).split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    const none = `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.`;
    const r1 = await login('clinic-read', none);
    expect(r1.status).toBe(400);
    expect(r1.json.errors[0]).toMatch(/^error validating token: /);
    const hs = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'HS256', kid: currentKeys[0]!.kid })
      .sign(new TextEncoder().encode(JSON.stringify(currentKeys[0]!.jwk)));
    const r2 = await login('clinic-read', hs);
    expect(r2.status).toBe(400);
    expect(r2.json.errors[0]).toMatch(/^error validating token: /);
  });

  it('rejects a token for another audience', async () => {
    const r = await login('clinic-read', await obo({ aud: 'urn:countersign:app' }));
    expect(r.status).toBe(400);
    expect(r.json.errors[0]).toMatch(/^error validating token: invalid audience/);
  });

  it('rejects an expired token beyond the role\'s small clock-skew leeway', async () => {
    const now = Math.floor(Date.now() / 1000);
    const r = await login('clinic-read', await obo({ iat: now - 90, exp: now - 30 }));
    expect(r.status).toBe(400);
    expect(r.json.errors).toEqual(['error validating token: token is expired (exp)']);
  });

  it('rejects a token from another issuer', async () => {
    const r = await login('clinic-read', await obo({ iss: 'http://evil.test' }));
    expect(r.status).toBe(400);
    expect(r.json.errors[0]).toMatch(/^error validating token: invalid issuer/);
  });

  it('rejects a token whose vault_role names another credential (unbound claim)', async () => {
    const r = await login('clinic-sensitive', await obo({ vault_role: 'clinic-read' }));
    expect(r.status).toBe(400);
    expect(r.json.errors).toEqual(['error validating claims: claim "vault_role" does not match any associated bound claim values']);
    const missing = await login('clinic-read', await obo({ vault_role: undefined }));
    expect(missing.json.errors).toEqual(['error validating claims: claim "vault_role" is missing']);
  });

  it('follows a key rotation at the IdP: a token under a new kid is accepted once the JWKS lists it', async () => {
    const rotated = await newKey();
    const before = await login('clinic-read', await obo({}, rotated));
    expect(before.status).toBe(400);
    currentKeys = [rotated, ...currentKeys];
    const after = await login('clinic-read', await obo({}, rotated));
    expect(after.status, JSON.stringify(after.json)).toBe(200);
    currentKeys = currentKeys.filter((k) => k.kid !== rotated.kid);
    await call('POST', 'auth/token/revoke-self', undefined, after.json.auth.client_token);
  });

  it('limits a per-call token to its own credential path', async () => {
    const token = await loginToken('clinic-read');
    expect((await call('GET', `${DATABASE_MOUNT}/creds/clinic-sensitive`, undefined, token)).status).toBe(403);
    expect((await call('GET', 'secret/data/upstreams/apikey-demo', undefined, token)).status).toBe(403);
    expect((await call('GET', 'sys/policies/acl', undefined, token)).status).toBe(403);
    const creds = await call('GET', `${DATABASE_MOUNT}/creds/clinic-read`, undefined, token);
    const denied = await call('PUT', 'sys/leases/revoke', { lease_id: creds.json.lease_id }, token);
    expect(denied).toMatchObject({ status: 403, json: { errors: ['permission denied'] } });
    await call('POST', 'auth/token/revoke-self', undefined, token);
  });

  it('serves the API key from KV v2 only to the upstream-apikey role', async () => {
    const token = await loginToken('upstream-apikey');
    const r = await call('GET', 'secret/data/upstreams/apikey-demo', undefined, token);
    expect(r.status).toBe(200);
    expect(r.json.data.data.api_key).toBe(API_KEY);
    expect((await call('GET', `${DATABASE_MOUNT}/creds/clinic-read`, undefined, token)).status).toBe(403);
    await call('POST', 'auth/token/revoke-self', undefined, token);
  });

  it('revoke-self drops the role: its open session ends and a new connection fails', async () => {
    const token = await loginToken('clinic-read');
    const { username, password } = (await call('GET', `${DATABASE_MOUNT}/creds/clinic-read`, undefined, token)).json.data;
    const open = new pg.Client({ connectionString: dbUrl(username, password) });
    open.on('error', () => {});
    await open.connect();
    const leasesBefore = vault.leases();
    const r = await call('POST', 'auth/token/revoke-self', undefined, token);
    expect(r.status).toBe(204);
    expect(await roleExists(username)).toBe(false);
    expect(vault.leases()).toBe(leasesBefore - 1);
    await expect(open.query('SELECT 1')).rejects.toBeTruthy();
    await open.end().catch(() => {});
    await expect(query(dbUrl(username, password), 'SELECT 1')).rejects.toMatchObject({ code: '28P01' });
    expect((await call('GET', 'auth/token/lookup-self', undefined, token)).status).toBe(403);
  });

  it('drops the role when its lease expires at the role\'s TTL', async () => {
    await call('POST', `${DATABASE_MOUNT}/roles/short-read`, {
      db_name: 'clinic',
      creation_statements: [`CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE clinic_reader;`],
      revocation_statements: [`DROP ROLE IF EXISTS "{{name}}";`],
      default_ttl: 1,
      max_ttl: 1,
    }, vault.rootToken);
    await call('POST', `${DATABASE_MOUNT}/config/clinic`, { allowed_roles: ['clinic-read', 'clinic-write', 'clinic-sensitive', 'short-read'] }, vault.rootToken);
    const r = await call('GET', `${DATABASE_MOUNT}/creds/short-read`, undefined, vault.rootToken);
    expect(r.json.lease_duration).toBe(1);
    const name = r.json.data.username as string;
    expect(await roleExists(name)).toBe(true);
    expect(await until(async () => !(await roleExists(name)), 5_000)).toBe(true);
  });

  it('revokes a token\'s leases when the token itself expires', async () => {
    await call('POST', 'auth/jwt/role/short-token', {
      role_type: 'jwt', bound_audiences: [VAULT_AUDIENCE], bound_claims: { vault_role: 'clinic-read' }, user_claim: 'sub',
      token_ttl: 1, token_policies: ['clinic-read'],
    }, vault.rootToken);
    const token = (await login('short-token', await obo())).json.auth.client_token;
    const name = (await call('GET', `${DATABASE_MOUNT}/creds/clinic-read`, undefined, token)).json.data.username as string;
    expect(await until(async () => !(await roleExists(name)), 5_000)).toBe(true);
    expect((await call('GET', 'auth/token/lookup-self', undefined, token)).status).toBe(403);
  });

  it('answers 503 "Vault is sealed" to everything while sealed, and works again once unsealed', async () => {
    const jwt = await obo();
    vault.seal();
    try {
      const r = await login('clinic-read', jwt);
      expect(r).toMatchObject({ status: 503, json: { errors: ['Vault is sealed'] } });
      expect((await call('GET', `${DATABASE_MOUNT}/creds/clinic-read`, undefined, vault.rootToken)).status).toBe(503);
      expect((await call('GET', 'sys/seal-status')).json).toMatchObject({ sealed: true, initialized: true });
    } finally {
      vault.unseal();
    }
    const r = await login('clinic-read', jwt);
    expect(r.status).toBe(200);
    await call('POST', 'auth/token/revoke-self', undefined, r.json.auth.client_token);
  });

  it('injects an HTTP fault on a path for a number of requests', async () => {
    const token = await loginToken('clinic-read');
    vault.setFault({ kind: 'http', path: 'database/creds/*', status: 500, times: 1 });
    expect(await call('GET', `${DATABASE_MOUNT}/creds/clinic-read`, undefined, token)).toMatchObject({ status: 500, json: { errors: ['internal error'] } });
    expect((await call('GET', `${DATABASE_MOUNT}/creds/clinic-read`, undefined, token)).status).toBe(200);
    await call('POST', 'auth/token/revoke-self', undefined, token);
  });

  it('when revocation fails, revoke-self answers 500 and the lease is retried until the role is gone', async () => {
    const token = await loginToken('clinic-read');
    const name = (await call('GET', `${DATABASE_MOUNT}/creds/clinic-read`, undefined, token)).json.data.username as string;
    vault.setFault({ kind: 'revoke', times: 1 });
    const r = await call('POST', 'auth/token/revoke-self', undefined, token);
    expect(r.status).toBe(500);
    expect(await roleExists(name)).toBe(true);
    expect(await until(async () => !(await roleExists(name)), 5_000)).toBe(true);
  });

  it('delays every answer by the latency knob', async () => {
    // A second of margin either side: on a loaded machine a plain request has taken over 250 ms.
    vault.setLatency(1_500);
    try {
      expect((await call('GET', 'sys/health')).ms).toBeGreaterThanOrEqual(1_490);
    } finally {
      vault.setLatency(0);
    }
    expect((await call('GET', 'sys/health')).ms).toBeLessThan(1_000);
  });

  it('writes a Vault-format audit log: paired entries, HMACs instead of tokens, the jti visible for replay spotting', async () => {
    const jti = `jti-${randomUUID()}`;
    const jwt = await obo({ jti });
    const first = await login('clinic-read', jwt);
    const second = await login('clinic-read', jwt); // Vault keeps no record of used jtis
    expect(first.status).toBe(200);
    expect(second.status).toBe(200);
    const token = first.json.auth.client_token as string;
    const creds = await call('GET', `${DATABASE_MOUNT}/creds/clinic-read`, undefined, token);
    await call('POST', 'auth/token/revoke-self', undefined, token);
    await call('POST', 'auth/token/revoke-self', undefined, second.json.auth.client_token);
    await new Promise((r) => setTimeout(r, 100));
    const text = await readFile(vault.auditLogPath!, 'utf8');
    expect(text).not.toContain(token);
    expect(text).not.toContain(jwt);
    expect(text).not.toContain(creds.json.data.password);
    expect(text).not.toContain(vault.rootToken);
    const entries = text.trim().split('\n').map((l) => JSON.parse(l));
    const logins = entries.filter((e) => e.type === 'response' && e.request.path === 'auth/jwt/login' && e.response?.auth?.metadata?.obo_jti === jti);
    expect(logins).toHaveLength(2);
    expect(logins[0].request.data.jwt).toBe(vault.auditHash(jwt));
    expect(logins[0].request.data.jwt).toBe(logins[1].request.data.jwt);
    expect(logins[0].response.auth.client_token).toBe(vault.auditHash(token));
    const hashed = await call('POST', 'sys/audit-hash/file', { input: token }, vault.rootToken);
    expect(hashed.json.data.hash).toBe(vault.auditHash(token));
    const credsReq = entries.find((e) => e.type === 'request' && e.request.id === creds.json.request_id);
    const credsRes = entries.find((e) => e.type === 'response' && e.request.id === creds.json.request_id);
    expect(credsReq.request.client_token).toBe(vault.auditHash(token));
    expect(credsRes.response.secret.lease_id).toBe(creds.json.lease_id);
    expect(credsRes.response.data.password).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
  });

  it('stop() revokes every outstanding lease, so no per-call role outlives the Vault', async () => {
    const other = await startVault();
    await configureLabVault({
      addr: other.addr,
      token: other.rootToken,
      issuer: ISSUER,
      jwksUrl: `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks`,
      postgres: { host: '127.0.0.1', port: db.port, database: 'clinic', username: db.managementUser, password: db.managementPassword },
    });
    const names: string[] = [];
    for (const role of ['clinic-read', 'clinic-write']) {
      const r = await fetch(`${other.addr}/v1/database/creds/${role}`, { headers: { 'x-vault-token': other.rootToken } });
      names.push(((await r.json()) as { data: { username: string } }).data.username);
    }
    expect(other.leases()).toBe(2);
    for (const n of names) expect(await roleExists(n)).toBe(true);
    await other.stop();
    for (const n of names) expect(await roleExists(n)).toBe(false);
  });
});

describe('Vault stand-in on the wire', () => {
  it("keeps a client's connection for its next requests, as Vault's listener does, and sends no Keep-Alive header", async () => {
    // undici takes `Keep-Alive: timeout=N` under its 2 s threshold as the connection's last answer and
    // opens a new one for every request, which no client of a real Vault pays.
    const agent = new Agent();
    let connections = 0;
    agent.on('connect', () => connections++);
    try {
      const headers: (string | null)[] = [];
      for (const path of ['sys/health', 'sys/health', 'auth/token/lookup-self']) {
        const res = await fetch(`${vault.addr}/v1/${path}`, { headers: { 'x-vault-token': vault.rootToken }, dispatcher: agent } as RequestInit);
        await res.text();
        expect(res.status).toBe(200);
        headers.push(res.headers.get('keep-alive'));
        await new Promise((r) => setTimeout(r, 50));
      }
      expect(headers).toEqual([null, null, null]);
      expect(connections).toBe(1);
    } finally {
      await agent.close();
    }
  });
});
