import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { capabilitiesFor, parsePolicy, PolicyParseError } from '../../lab/vault/acl.ts';
import { startVault } from '../../lab/vault/index.ts';
import type { LabVault } from '../../lab/vault/index.ts';

const caps = (hcl: string, path: string): string[] => [...capabilitiesFor([parsePolicy(hcl)], path)].sort();

describe('Vault ACL policies', () => {
  it('parses HCL path stanzas with comments and the legacy policy shorthand', () => {
    const rules = parsePolicy(`
      # read the clinic's credentials
      path "database/creds/clinic-read" { capabilities = ["read"] }
      /* legacy */
      path "secret/data/*" {
        policy = "write"
      }
      // ignored keys are fine
      path "sys/leases/revoke" { capabilities = ["update", "sudo"] }
    `);
    expect(rules.map((r) => r.pattern)).toEqual(['database/creds/clinic-read', 'secret/data/*', 'sys/leases/revoke']);
    expect([...rules[1]!.capabilities].sort()).toEqual(['create', 'delete', 'list', 'read', 'update']);
  });

  it('refuses malformed policies and unknown capabilities', () => {
    expect(() => parsePolicy('path "x" { capabilities = ["read"]')).toThrow(PolicyParseError);
    expect(() => parsePolicy('path "x" { capabilities = ["fly"] }')).toThrow(PolicyParseError);
    expect(() => parsePolicy('path "x" { capabilities = "read" }')).toThrow(PolicyParseError);
  });

  it('prefers an exact path over a glob, and a longer glob over a shorter one', () => {
    const hcl = `
      path "secret/*" { capabilities = ["read", "list"] }
      path "secret/data/*" { capabilities = ["create"] }
      path "secret/data/pinned" { capabilities = ["delete"] }`;
    expect(caps(hcl, 'secret/data/pinned')).toEqual(['delete']);
    expect(caps(hcl, 'secret/data/other')).toEqual(['create']);
    expect(caps(hcl, 'secret/metadata/x')).toEqual(['list', 'read']);
    expect(caps(hcl, 'database/creds/x')).toEqual([]);
  });

  it('matches + to exactly one segment and never lets a glob cross into a sibling prefix', () => {
    const hcl = `path "database/creds/+" { capabilities = ["read"] }
                 path "database/cred*" { capabilities = ["list"] }`;
    expect(caps(hcl, 'database/creds/clinic-read')).toEqual(['read']);
    expect(caps(hcl, 'database/creds/clinic-read/extra')).toEqual(['list']);
    expect(caps('path "database/creds/clinic-read" { capabilities = ["read"] }', 'database/creds/clinic-read-evil')).toEqual([]);
  });

  it('lets deny override every grant on the same path, across policies', () => {
    const a = parsePolicy('path "secret/data/x" { capabilities = ["read"] }');
    const b = parsePolicy('path "secret/data/x" { capabilities = ["deny"] }');
    expect([...capabilitiesFor([a, b], 'secret/data/x')]).toEqual(['deny']);
  });
});

describe('ACLs enforced by the stand-in on every request', () => {
  let vault: LabVault;
  const call = async (method: string, path: string, body?: unknown, token?: string): Promise<number> =>
    (
      await fetch(`${vault.addr}/v1/${path}`, {
        method,
        headers: { 'content-type': 'application/json', ...(token ? { 'x-vault-token': token } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body),
      })
    ).status;
  const tokenWith = async (policies: string[]): Promise<string> => {
    const res = await fetch(`${vault.addr}/v1/auth/token/create`, {
      method: 'POST',
      headers: { 'x-vault-token': vault.rootToken },
      body: JSON.stringify({ policies, ttl: '5m' }),
    });
    return ((await res.json()) as { auth: { client_token: string } }).auth.client_token;
  };

  beforeAll(async () => {
    vault = await startVault();
    await call('POST', 'sys/mounts/kv', { type: 'kv-v2' }, vault.rootToken);
    await call('POST', 'kv/data/app', { data: { k: 'v' } }, vault.rootToken);
    await call('PUT', 'sys/policies/acl/app-read', { policy: 'path "kv/data/app" { capabilities = ["read"] }' }, vault.rootToken);
    await call('PUT', 'sys/policies/acl/kv-admin', { policy: 'path "kv/*" { capabilities = ["create", "read", "update", "delete", "list"] }\npath "sys/auth/*" { capabilities = ["create", "update"] }' }, vault.rootToken);
  });
  afterAll(async () => {
    await vault?.stop();
  });

  it('lets a token do exactly what its policies grant', async () => {
    const t = await tokenWith(['app-read']);
    expect(await call('GET', 'kv/data/app', undefined, t)).toBe(200);
    expect(await call('POST', 'kv/data/app', { data: { k: 'x' } }, t)).toBe(403);
    expect(await call('GET', 'kv/data/other', undefined, t)).toBe(403);
    expect(await call('GET', 'kv/metadata/app', undefined, t)).toBe(403);
  });

  it('distinguishes create from update by whether the secret exists', async () => {
    await call('PUT', 'sys/policies/acl/update-only', { policy: 'path "kv/data/*" { capabilities = ["update"] }' }, vault.rootToken);
    const t = await tokenWith(['update-only']);
    expect(await call('POST', 'kv/data/app', { data: { k: 'y' } }, t)).toBe(200);
    expect(await call('POST', 'kv/data/new-one', { data: { k: 'y' } }, t)).toBe(403);
  });

  it('requires sudo on root-protected paths such as sys/auth/:path', async () => {
    const t = await tokenWith(['kv-admin']);
    expect(await call('POST', 'sys/auth/jwt-x', { type: 'jwt' }, t)).toBe(403);
    expect(await call('POST', 'sys/auth/jwt-x', { type: 'jwt' }, vault.rootToken)).toBe(204);
  });

  it('refuses a policy that does not parse, with Vault\'s 400', async () => {
    expect(await call('PUT', 'sys/policies/acl/broken', { policy: 'path "x" {' }, vault.rootToken)).toBe(400);
  });

  it('gives every token the default policy: it may look itself up and revoke itself, not revoke leases', async () => {
    const t = await tokenWith(['app-read']);
    expect(await call('GET', 'auth/token/lookup-self', undefined, t)).toBe(200);
    expect(await call('PUT', 'sys/leases/revoke', { lease_id: 'database/creds/x/y' }, t)).toBe(403);
    expect(await call('POST', 'auth/token/revoke-self', undefined, t)).toBe(204);
    expect(await call('GET', 'auth/token/lookup-self', undefined, t)).toBe(403);
  });

  it('accepts the token as Authorization: Bearer too, and refuses requests without one', async () => {
    const t = await tokenWith(['app-read']);
    const res = await fetch(`${vault.addr}/v1/kv/data/app`, { headers: { authorization: `Bearer ${t}` } });
    expect(res.status).toBe(200);
    expect(await call('GET', 'kv/data/app')).toBe(403);
  });
});
