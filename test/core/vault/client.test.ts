import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startVault, type LabVault } from '../../../lab/vault/index.ts';
import { createVaultClient, type VaultClient } from '../../../main/core/vault/client.ts';
import { AppError } from '../../../common/errors.ts';
import { FaultProxy } from '../broker/fixtures.ts';

let vault: LabVault;
let client: VaultClient;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (error) {
    return AppError.is(error) ? error.code : `foreign:${String(error)}`;
  }
}

beforeAll(async () => {
  vault = await startVault();
  client = createVaultClient({ address: vault.addr, timeoutMs: 1_000 });
  const put = (path: string, body: unknown) =>
    fetch(`${vault.addr}/v1/${path}`, { method: 'POST', headers: { 'x-vault-token': vault.rootToken }, body: JSON.stringify(body) });
  await put('sys/mounts/secret', { type: 'kv', options: { version: '2' } });
  await put('secret/data/upstreams/apikey-demo', { data: { api_key: 'k-123' } });
  await put('sys/auth/jwt', { type: 'jwt' });
});
afterAll(async () => {
  await client?.close();
  await vault?.stop();
});

describe('Vault client against the Vault stand-in', () => {
  it('reads a KV v2 secret and looks up its own token', async () => {
    const secret = await client.kvRead(vault.rootToken, 'secret', 'upstreams/apikey-demo');
    expect(secret.data.api_key).toBe('k-123');
    expect(secret.version).toBe(1);
    expect(secret.requestId).toMatch(/\S+/);
    expect((await client.lookupSelf(vault.rootToken)).policies).toContain('root');
  });

  it('maps a missing secret (404) to VAULT_BAD_RESPONSE naming the path problem', async () => {
    expect(await codeOf(client.kvRead(vault.rootToken, 'secret', 'nothing-here'))).toBe('VAULT_BAD_RESPONSE');
  });

  it('maps a bad token (403) to VAULT_PERMISSION_DENIED', async () => {
    expect(await codeOf(client.lookupSelf('hvs.not-a-token'))).toBe('VAULT_PERMISSION_DENIED');
  });

  it("maps a refused JWT login (400) to VAULT_LOGIN_FAILED with Vault's reason and without the token", async () => {
    const jwt = 'eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXRoYXQtaXMtbm90';
    const err = (await client.loginJwt('jwt', 'no-such-role', jwt).catch((e: unknown) => e)) as AppError;
    expect(err.code).toBe('VAULT_LOGIN_FAILED');
    expect(err.message).toContain('no-such-role');
    expect(err.message).not.toContain(jwt);
  });

  it('maps a sealed Vault (503) to VAULT_SEALED', async () => {
    vault.seal();
    try {
      expect(await codeOf(client.lookupSelf(vault.rootToken))).toBe('VAULT_SEALED');
    } finally {
      vault.unseal();
    }
  });

  it('gives up on a slow Vault at its time-out (VAULT_UNAVAILABLE) and on an unreachable one', async () => {
    vault.setLatency(1_500);
    const started = Date.now();
    try {
      expect(await codeOf(client.lookupSelf(vault.rootToken))).toBe('VAULT_UNAVAILABLE');
    } finally {
      vault.setLatency(0);
    }
    expect(Date.now() - started).toBeLessThan(1_400);
    const nowhere = createVaultClient({ address: 'http://127.0.0.1:9', timeoutMs: 500 });
    expect(await codeOf(nowhere.lookupSelf('x'))).toBe('VAULT_UNAVAILABLE');
  });

  it('answers CANCELLED when the caller aborts', async () => {
    vault.setLatency(500);
    try {
      expect(await codeOf(client.lookupSelf(vault.rootToken, AbortSignal.timeout(50)))).toBe('CANCELLED');
    } finally {
      vault.setLatency(0);
    }
  });

  it('revokes itself, after which its token no longer works', async () => {
    const created = await fetch(`${vault.addr}/v1/auth/token/create`, { method: 'POST', headers: { 'x-vault-token': vault.rootToken }, body: '{"ttl":"60s"}' });
    const token = ((await created.json()) as { auth: { client_token: string } }).auth.client_token;
    await client.lookupSelf(token);
    await client.revokeSelf(token);
    expect(await codeOf(client.lookupSelf(token))).toBe('VAULT_PERMISSION_DENIED');
  });

  it('sends X-Vault-Namespace and X-Vault-Request, and the token only in its header', async () => {
    const proxy = await FaultProxy.start(vault.addr);
    try {
      const ns = createVaultClient({ address: proxy.url, namespace: 'team-a' });
      await ns.lookupSelf(vault.rootToken).catch(() => {});
      expect(proxy.lastHeaders['x-vault-namespace']).toBe('team-a');
      expect(proxy.lastHeaders['x-vault-request']).toBe('true');
      expect(proxy.lastHeaders['x-vault-token']).toBe(vault.rootToken);
    } finally {
      await proxy.stop();
    }
  });

  it('refuses a mount or role name that would leave its path', async () => {
    expect(await codeOf(client.databaseCreds(vault.rootToken, 'database', '../sys/seal'))).toBe('CONFIG_INVALID');
  });
});

describe('Vault behind TLS with a private CA', () => {
  let dir: string;
  let tls: Server;
  let address: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'countersign-vault-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
    const target = new URL(vault.addr);
    tls = createHttpsServer({ key: readFileSync(join(dir, 'key.pem')), cert: readFileSync(join(dir, 'cert.pem')) }, (req, res) => {
      const up = httpRequest({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      req.pipe(up);
    });
    await new Promise<void>((resolve) => tls.listen(0, '127.0.0.1', resolve));
    address = `https://127.0.0.1:${(tls.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    tls.closeAllConnections();
    await new Promise<void>((resolve) => tls.close(() => resolve()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('trusts the configured CA', async () => {
    const trusted = createVaultClient({ address, caCert: readFileSync(join(dir, 'cert.pem'), 'utf8') });
    expect((await trusted.lookupSelf(vault.rootToken)).policies).toContain('root');
    await trusted.close();
  });

  it('refuses the same server without it', async () => {
    const untrusted = createVaultClient({ address, timeoutMs: 1_000 });
    expect(await codeOf(untrusted.lookupSelf(vault.rootToken))).toBe('VAULT_UNAVAILABLE');
  });
});
