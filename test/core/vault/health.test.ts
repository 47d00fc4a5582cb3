/**
 * `sys/health` through the Vault client, against the Vault stand-in: Vault answers its state with a
 * status code of its own for each (api-docs/system/health), which the client reads as the state, not as
 * a failure; only no answer at all is a failure.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startVault, type LabVault } from '../../../lab/vault/index.ts';
import { createVaultClient } from '../../../main/core/vault/client.ts';

let vault: LabVault;
beforeAll(async () => {
  vault = await startVault();
});
afterAll(async () => {
  await vault?.stop();
});

describe('Vault health', () => {
  it('reads an unsealed Vault, then the same Vault sealed (503), without a token', async () => {
    const client = createVaultClient({ address: vault.addr, timeoutMs: 2_000 });
    try {
      const open = await client.health();
      expect(open).toMatchObject({ initialized: true, sealed: false, standby: false });
      expect(open.version).toMatch(/^\d+\.\d+\.\d+/);
      vault.seal();
      expect(await client.health()).toMatchObject({ initialized: true, sealed: true });
    } finally {
      vault.unseal();
      await client.close();
    }
  });

  it("reads a standby (429) and an uninitialised Vault (501) from their answers' bodies, asking the root namespace", async () => {
    const answers = [
      { status: 429, body: { initialized: true, sealed: false, standby: true, version: '1.21.0' } },
      { status: 501, body: { initialized: false, sealed: true, standby: true } },
    ];
    const namespaces: Array<string | undefined> = [];
    const server = createServer((req, res) => {
      namespaces.push(req.headers['x-vault-namespace'] as string | undefined);
      const a = answers.shift()!;
      res.writeHead(req.url === '/v1/sys/health' ? a.status : 404, { 'content-type': 'application/json' }).end(JSON.stringify(a.body));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const client = createVaultClient({ address: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, namespace: 'team-a', timeoutMs: 2_000 });
    try {
      expect(await client.health()).toEqual({ initialized: true, sealed: false, standby: true, version: '1.21.0' });
      expect(await client.health()).toMatchObject({ initialized: false, sealed: true });
      // the cluster's health is served at the root, whatever namespace the calls use
      expect(namespaces).toEqual([undefined, undefined]);
    } finally {
      await client.close();
      await new Promise((r) => server.close(r));
    }
  });

  it('fails with VAULT_UNAVAILABLE when nothing answers', async () => {
    const client = createVaultClient({ address: 'http://127.0.0.1:9', timeoutMs: 500 });
    await expect(client.health()).rejects.toMatchObject({ code: 'VAULT_UNAVAILABLE' });
    await client.close();
  });
});
