import { execFileSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { startLab } from '../../lab/index.ts';
import type { Lab } from '../../lab/index.ts';
import { decodeJwt, exchange, readDetails, signIn } from './idp-fixtures.ts';

let lab: Lab;

function portOf(url: string): number {
  return Number(new URL(url.replace(/^postgresql:/, 'http:')).port);
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** This process's child processes (PostgreSQL runs as one), other than the `ps` listing them. */
function children(): string[] {
  const out = execFileSync('ps', ['-o', 'pid=,comm=', '--ppid', String(process.pid)], { encoding: 'utf8' }).trim();
  return out
    ? out
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => !/\sps$/.test(l))
    : [];
}

// Vault's JSON answers are read field by field in assertions.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Json = Record<string, any>;

async function vault(method: string, path: string, body?: unknown, token?: string): Promise<{ status: number; json: Json }> {
  const res = await fetch(`${lab.vaultAddr}/v1/${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...(token ? { 'x-vault-token': token } : {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : {} };
}

let childrenBefore: string[];

beforeAll(async () => {
  childrenBefore = children();
  lab = await startLab();
});
afterAll(async () => {
  await lab?.stop();
});

describe('the composed lab', () => {
  it('publishes every endpoint of the shared contract', async () => {
    expect(lab.issuer).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(lab.postgresUrl).toMatch(/^postgresql:\/\/127\.0\.0\.1:\d+\/clinic$/);
    expect(lab.upstreamMcpUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    expect(lab.apiKeyUpstreamUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/mcp$/);
    expect(lab.users.map((u) => u.username)).toEqual(['alice', 'bob', 'admin']);
    const discovery = (await (await fetch(`${lab.issuer}/.well-known/openid-configuration`)).json()) as { issuer: string };
    expect(discovery.issuer).toBe(lab.issuer);
    expect((await vault('GET', 'sys/health')).json).toMatchObject({ sealed: false, initialized: true });
    const auths = await vault('GET', 'sys/auth', undefined, lab.vaultToken);
    expect(Object.keys(auths.json.data)).toContain('jwt/');
    const mounts = await vault('GET', 'sys/mounts', undefined, lab.vaultToken);
    expect(mounts.json.data['database/'].type).toBe('database');
    expect(mounts.json.data['secret/']).toMatchObject({ type: 'kv', options: { version: '2' } });
    for (const role of ['clinic-read', 'clinic-write', 'clinic-sensitive', 'upstream-apikey']) {
      const r = await vault('GET', `auth/jwt/role/${role}`, undefined, lab.vaultToken);
      expect(r.json.data).toMatchObject({ role_type: 'jwt', bound_audiences: ['countersign-vault'], bound_claims: { vault_role: role }, user_claim: 'sub', token_ttl: 60 });
    }
    const meta = await fetch(lab.upstreamMcpUrl.replace('/mcp', '/.well-known/oauth-protected-resource/mcp'));
    expect(((await meta.json()) as { resource: string }).resource).toBe(lab.upstreamMcpUrl);
  });

  it('carries alice\'s read through the whole chain: sign-in, OBO, Vault login, a per-call role, a logged statement joined by jti', async () => {
    const alice = lab.users.find((u) => u.username === 'alice')!;
    const tokens = await signIn(lab.idp, { username: alice.username, password: alice.password });
    const ex = await exchange(lab.idp, tokens.access_token as string, { details: readDetails() });
    expect(ex.status).toBe(200);
    const oboToken = ex.json.access_token as string;
    const claims = decodeJwt(oboToken);
    expect(claims).toMatchObject({ sub: alice.sub, aud: 'countersign-vault', vault_role: 'clinic-read' });

    const login = await vault('POST', 'auth/jwt/login', { role: 'clinic-read', jwt: oboToken });
    expect(login.status).toBe(200);
    expect(login.json.auth.metadata).toMatchObject({ role: 'clinic-read', obo_jti: claims.jti });
    const token = login.json.auth.client_token as string;
    const creds = await vault('GET', 'database/creds/clinic-read', undefined, token);
    expect(creds.status).toBe(200);
    const { username, password } = creds.json.data as { username: string; password: string };

    const url = new URL(lab.postgresUrl);
    url.username = encodeURIComponent(username);
    url.password = encodeURIComponent(password);
    const c = new pg.Client({ connectionString: url.toString(), application_name: String(claims.jti) });
    await c.connect();
    const rows = await c.query('SELECT count(*)::int AS n FROM patients');
    await c.end();
    expect(rows.rows[0].n).toBe(10);
    // The OBO cannot buy another credential: its vault_role binds it to clinic-read.
    const other = await vault('POST', 'auth/jwt/login', { role: 'clinic-sensitive', jwt: oboToken });
    expect(other.status).toBe(400);

    expect((await vault('POST', 'auth/token/revoke-self', undefined, token)).status).toBe(204);
    const log = await lab.pg.readLog();
    expect(log).toContain(`app=${String(claims.jti)} user=${username} db=clinic LOG:  statement: SELECT count(*)::int AS n FROM patients`);
    expect(log).not.toContain(password);
    const audit = await readFile(lab.vaultAuditLogPath, 'utf8');
    expect(audit).not.toContain(oboToken);
    expect(audit).not.toContain(token);
  });

  it('gives the API-key upstream\'s key to an OBO for upstream-apikey, and to nothing else', async () => {
    const alice = lab.users.find((u) => u.username === 'alice')!;
    const tokens = await signIn(lab.idp, { username: alice.username, password: alice.password });
    const ex = await exchange(lab.idp, tokens.access_token as string, {
      details: [{ type: 'api_key', locations: [lab.apiKeyUpstreamUrl], actions: ['read'], identifier: 'apikey-demo' }],
    });
    expect(ex.status).toBe(200);
    const login = await vault('POST', 'auth/jwt/login', { role: 'upstream-apikey', jwt: ex.json.access_token });
    const token = login.json.auth.client_token as string;
    const key = await vault('GET', 'secret/data/upstreams/apikey-demo', undefined, token);
    expect(key.json.data.data.api_key).toBe(lab.upstream.apiKey);
    expect((await vault('GET', 'database/creds/clinic-read', undefined, token)).status).toBe(403);
    await vault('POST', 'auth/token/revoke-self', undefined, token);
  });

  it('follows the IdP\'s key rotation: an OBO signed with the new key logs in without reconfiguring Vault', async () => {
    const alice = lab.users.find((u) => u.username === 'alice')!;
    const tokens = await signIn(lab.idp, { username: alice.username, password: alice.password });
    const before = await exchange(lab.idp, tokens.access_token as string, { details: readDetails() });
    await lab.idp.rotateKeys();
    const after = await exchange(lab.idp, tokens.access_token as string, { details: readDetails() });
    const kid = (t: string): string => JSON.parse(Buffer.from(t.split('.')[0]!, 'base64url').toString()).kid as string;
    expect(kid(after.json.access_token as string)).not.toBe(kid(before.json.access_token as string));
    const login = await vault('POST', 'auth/jwt/login', { role: 'clinic-read', jwt: after.json.access_token });
    expect(login.status, JSON.stringify(login.json)).toBe(200);
    await vault('POST', 'auth/token/revoke-self', undefined, login.json.auth.client_token);
  });

  it('also trusts the IdP through oidc_discovery_url, and refuses the user\'s own access token (wrong audience)', async () => {
    const mount = `jwt-discovery-${Date.now()}`;
    expect((await vault('POST', `sys/auth/${mount}`, { type: 'jwt' }, lab.vaultToken)).status).toBe(204);
    expect((await vault('POST', `auth/${mount}/config`, { oidc_discovery_url: lab.issuer, bound_issuer: lab.issuer }, lab.vaultToken)).status).toBe(204);
    await vault('POST', `auth/${mount}/role/read`, { role_type: 'jwt', bound_audiences: ['countersign-vault'], bound_claims: { vault_role: 'clinic-read' }, user_claim: 'sub', token_ttl: 60 }, lab.vaultToken);
    const alice = lab.users.find((u) => u.username === 'alice')!;
    const tokens = await signIn(lab.idp, { username: alice.username, password: alice.password });
    const ex = await exchange(lab.idp, tokens.access_token as string, { details: readDetails() });
    const ok = await vault('POST', `auth/${mount}/login`, { role: 'read', jwt: ex.json.access_token });
    expect(ok.status).toBe(200);
    await vault('POST', 'auth/token/revoke-self', undefined, ok.json.auth.client_token);
    const passthrough = await vault('POST', 'auth/jwt/login', { role: 'clinic-read', jwt: tokens.access_token });
    expect(passthrough.status).toBe(400);
    expect(passthrough.json.errors[0]).toMatch(/^error validating token: invalid audience/);
  });

  it('runs `npm run lab --json`: one JSON line with the contract\'s fields, then stops cleanly on SIGTERM', async () => {
    const t0 = Date.now();
    const child = spawn(process.execPath, ['lab/cli.ts', '--json'], { cwd: new URL('../..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'pipe'] });
    // A failed expectation below must not leave the lab running for the next test to find.
    onTestFinished(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const line = await new Promise<string>((resolve, reject) => {
      let buf = '';
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        if (buf.includes('\n')) resolve(buf.split('\n')[0]!);
      });
      child.once('exit', (code) => reject(new Error(`lab exited early (${code})`)));
    });
    const readyMs = Date.now() - t0;
    const info = JSON.parse(line) as Record<string, unknown>;
    for (const k of ['issuer', 'vault_addr', 'vault_token', 'postgres_url', 'postgres_admin_url', 'upstream_mcp_url', 'users']) expect(info).toHaveProperty(k);
    expect(readyMs).toBeLessThan(10_000);
    const ports = ['issuer', 'vault_addr', 'postgres_url', 'upstream_mcp_url', 'api_key_upstream_url'].map((k) => portOf(String(info[k])));
    for (const p of ports) expect(await portOpen(p)).toBe(true);
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    for (const p of ports) expect(await portOpen(p)).toBe(false);
    for (const k of ['postgres_log', 'vault_audit_log']) expect(existsSync(dirname(String(info[k])))).toBe(false);
  });

  it('stop() leaves nothing: no per-call role, process, port or temp dir', async () => {
    // A lease still outstanding when the lab stops.
    const creds = await vault('GET', 'database/creds/clinic-write', undefined, lab.vaultToken);
    const role = creds.json.data.username as string;
    const admin = new pg.Client({ connectionString: lab.postgresAdminUrl });
    await admin.connect();
    const count = async (): Promise<number> => (await admin.query(`SELECT count(*)::int AS n FROM pg_roles WHERE rolname LIKE 'v-%'`)).rows[0].n;
    expect(await count()).toBe(1);
    // Vault goes first within stop(); check its part while PostgreSQL is still up.
    await lab.vault.stop();
    expect(await count()).toBe(0);
    expect((await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).rowCount).toBe(0);
    await admin.end();

    const ports = [lab.issuer, lab.vaultAddr, lab.postgresUrl, lab.upstreamMcpUrl, lab.apiKeyUpstreamUrl].map(portOf);
    const dirs = [dirname(lab.pg.dataDir), dirname(lab.vaultAuditLogPath)];
    for (const d of dirs) expect(existsSync(d)).toBe(true);
    await lab.stop();
    for (const p of ports) expect(await portOpen(p)).toBe(false);
    for (const d of dirs) expect(existsSync(d)).toBe(false);
    expect(children().filter((p) => !childrenBefore.includes(p))).toEqual([]);
  });
});
