/**
 * The whole chain in each delegation profile, against the lab IdP speaking as each vendor
 * (lab/idp/vendor-profiles.ts): the composed core signs in (Chromium plays the system browser), an
 * MCP SDK client spawns the bridge as Claude Desktop does, and a query goes exchange → Vault →
 * PostgreSQL → revoke → record. Then, per profile, the OBOs Countersign must refuse: the lab's
 * test-only hook (forgeNextOboForTests) rewrites the next OBO's claims and signs them with the IdP's
 * real key, and each call is refused with OBO_INVALID and the reason, nothing minted at Vault.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { JWTPayload } from 'jose';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLab, type Lab } from '../../lab/index.ts';
import type { LabIdpProfile } from '../../lab/idp/index.ts';
import type { Core } from '../../main/core/app.ts';
import { ScriptedPrompterForTests } from '../../main/core/approvals/prompter.ts';
import { MemorySecretStore } from '../../main/core/secrets/memory-store.ts';
import { installExchangeKey } from '../../main/core/idp/exchange-client.ts';
import { launchBrowser, type LabBrowser } from '../helpers/browser.ts';
import { connectBridge, startLabCore, stopAll } from '../helpers/lab-core.ts';

type Forgery = {
  name: string;
  change: (c: JWTPayload, previous: JWTPayload | undefined) => JWTPayload;
  reason: RegExp;
};

const longLife = {
  name: 'an exp over 60 s',
  change: (c: JWTPayload) => ({ ...c, exp: (c.iat as number) + 300 }),
  reason: /lives longer than 60 s/,
};
// Okta cannot issue under 5 minutes, so the lab's okta configuration allows 300 s and no more.
const longerThanAllowed = {
  name: 'an exp over the 300 s allowed',
  change: (c: JWTPayload) => ({ ...c, exp: (c.iat as number) + 600 }),
  reason: /lives longer than 300 s \(600 s\)/,
};
const repeatedJti = {
  name: 'a repeated jti',
  change: (c: JWTPayload, p: JWTPayload | undefined) => ({ ...c, jti: p!.jti }),
  reason: /already used \(repeated jti\)/,
};

/** What each profile must refuse, written in the claims that vendor uses. */
const FORGERIES: Record<Exclude<LabIdpProfile, 'lab'>, Forgery[]> = {
  keycloak: [
    {
      name: 'a missing scope',
      change: ({ scope: _scope, ...c }) => c,
      reason: /does not carry the scope vault:clinic-read/,
    },
    {
      name: 'an extra scope',
      change: (c) => ({ ...c, scope: `${String(c.scope)} vault:clinic-write` }),
      reason: /carries scopes beyond vault:clinic-read \(vault:clinic-write\)/,
    },
    {
      name: 'another client in azp',
      change: (c) => ({ ...c, azp: 'someone-else' }),
      reason: /issued to another client \(azp is not this install's client\)/,
    },
    {
      name: 'no actor at all (no act, no azp)',
      change: ({ azp: _azp, ...c }) => c,
      reason: /names no actor/,
    },
    {
      name: 'an act naming another actor',
      change: (c) => ({ ...c, act: { sub: 'someone-else' } }),
      reason: /names another actor/,
    },
    {
      name: 'a vault_role other than the scope names',
      change: (c) => ({ ...c, vault_role: 'clinic-write' }),
      reason: /vault_role \(clinic-write\) is not the credential the scope vault:clinic-read names/,
    },
    longLife,
    repeatedJti,
  ],
  okta: [
    {
      name: 'a missing scope',
      change: ({ scp: _scp, ...c }) => c,
      reason: /does not carry the scope vault:clinic-read/,
    },
    {
      name: 'an extra scope',
      change: (c) => ({ ...c, scp: [...(c.scp as string[]), 'vault:clinic-sensitive'] }),
      reason: /carries scopes beyond vault:clinic-read \(vault:clinic-sensitive\)/,
    },
    {
      name: 'another client in cid',
      change: (c) => ({ ...c, cid: 'someone-else' }),
      reason: /issued to another client \(cid is not this install's client\)/,
    },
    {
      name: 'no actor at all (no act, no cid)',
      change: ({ cid: _cid, ...c }) => c,
      reason: /names no actor/,
    },
    {
      name: 'the sign-in app in cid instead of the service app',
      change: (c) => ({ ...c, cid: 'countersign-desktop' }),
      reason: /issued to another client \(cid is not this install's client\)/,
    },
    longerThanAllowed,
    repeatedJti,
  ],
  verify: [
    {
      name: 'no authorization_details',
      change: ({ authorization_details: _d, ...c }) => c,
      reason: /carries no authorization_details, which the rar delegation profile requires/,
    },
    {
      name: 'authorization details wider than asked',
      change: (c) => ({
        ...c,
        authorization_details: [
          ...(c.authorization_details as object[]),
          {
            type: 'postgres',
            locations: ['postgres://lab/clinic'],
            actions: ['DELETE'],
            tables: ['patients'],
          },
        ],
      }),
      reason: /grants authorization details other than those asked for/,
    },
    {
      name: 'the entry asked for with a field it did not ask for (a privilege)',
      change: (c) => ({
        ...c,
        authorization_details: (c.authorization_details as object[]).map((d) => ({ ...d, privileges: ['sensitive'] })),
      }),
      reason: /grants authorization details other than those asked for/,
    },
    {
      name: 'another actor in act',
      change: (c) => ({ ...c, act: { sub: 'someone-else' } }),
      reason:
        /does not name Countersign as the actor \(act\.sub\), which the rar delegation profile requires/,
    },
    { name: 'no act', change: ({ act: _act, ...c }) => c, reason: /does not name Countersign as the actor/ },
    longLife,
    repeatedJti,
  ],
};

const text = (r: CallToolResult) => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('');

let browser: LabBrowser;
beforeAll(async () => {
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
});

describe.each(['keycloak', 'okta', 'verify'] as const)('the lab IdP speaking as %s', (profile) => {
  let lab: Lab;
  let home: string;
  let core: Core;
  let client: Client;
  let admin: pg.Pool;

  beforeAll(async () => {
    [lab, home] = await Promise.all([
      startLab({ idpProfile: profile }),
      mkdtemp(join(tmpdir(), `countersign-${profile}-`)),
    ]);
    const secrets = new MemorySecretStore('this test keeps nothing between starts');
    if (lab.idp.exchangeClientId) {
      // What Okta's administrator does: a service app holding this install's exchange key.
      const key = await installExchangeKey(secrets, lab.issuer);
      await lab.idp.registerServiceApp({ clientId: lab.idp.exchangeClientId, jwks: { keys: [key.publicJwk] } });
    }
    core = await startLabCore({ lab, home, browser, secrets, prompter: new ScriptedPrompterForTests() });
    await core.handlers['session.signIn']({});
    client = await connectBridge(home, { name: 'claude-ai', version: '0.0.0-profiles' });
    admin = new pg.Pool({ connectionString: lab.postgresAdminUrl, max: 1 });
    admin.on('error', () => {});
  }, 120_000);

  afterAll(() => stopAll([client, admin, core, lab], home), 60_000);

  const lastRecord = () => core.audit.page({ filter: { tool: 'query' }, limit: 1 }).records[0]!;

  it('runs a governed query through the bridge: exchange in this profile, Vault, PostgreSQL, revoke, record', async () => {
    const expected = profile === 'verify' ? 'rar' : 'scopes';
    expect(core.status().idp.delegation).toBe(expected);
    let issued: JWTPayload | undefined;
    lab.idp.forgeNextOboForTests((c) => (issued = c));
    const result = (await client.callTool({
      name: 'query',
      arguments: { sql: 'SELECT count(*)::int AS n FROM appointments' },
    })) as CallToolResult;
    expect(result.isError ?? false, text(result)).toBe(false);
    expect((result.structuredContent as { rows: Array<{ n: number }> }).rows[0]!.n).toBeGreaterThan(0);

    const record = lastRecord();
    expect(record.outcome).toBe('success');
    expect(record.delegation).toBe(expected);
    // The RAR is computed and recorded in every profile; under scopes the record says the IdP decided by scope.
    expect(record.authorization_details).toMatchObject([
      { type: 'postgres', actions: ['SELECT'], tables: ['public.appointments'] },
    ]);
    const exchange = record.hops.find((h) => h.name === 'exchange')!;
    expect(exchange.outcome).toBe('ok');
    if (profile === 'okta') {
      // Okta's shape end to end: the service app exchanged (cid), the OBO lives Okta's shortest 5 minutes.
      expect(issued).toMatchObject({ cid: lab.idp.exchangeClientId, scp: ['vault:clinic-read'] });
      expect((issued!.exp as number) - (issued!.iat as number)).toBe(300);
      expect(issued).not.toHaveProperty('azp');
      // The record says the weaker lifetime setting ran.
      expect(exchange.detail).toContain('lifetime=300s (over 60 s: idp.allowLongLivedOboUpToSeconds)');
    } else {
      expect(exchange.detail).not.toContain('lifetime=');
    }
    if (expected === 'scopes')
      expect(exchange.detail).toMatch(
        /^profile=scopes scope=vault:clinic-read \(the identity provider decided at scope level/,
      );
    else expect(exchange.detail).toMatch(/^profile=rar vault_role=clinic-read/);
    for (const hop of ['vault_login', 'vault_creds', 'execute', 'revoke', 'revoke_check'])
      expect(record.hops.find((h) => h.name === hop)?.outcome, hop).toBe('ok');
    expect(record.keys.lease_id).toMatch(/^database\/creds\/clinic-read\//);
    const left = await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [record.keys.db_role]);
    expect(left.rowCount).toBe(0);
  });

  it.each(FORGERIES[profile])(
    'refuses an OBO with $name (OBO_INVALID and the reason), before Vault mints anything',
    async ({ change, reason }) => {
      const leasesBefore = lab.vault.leases();
      lab.idp.forgeNextOboForTests(change);
      const result = (await client.callTool({
        name: 'query',
        arguments: { sql: 'SELECT count(*)::int AS n FROM appointments' },
      })) as CallToolResult;
      expect(result.isError).toBe(true);
      expect(text(result)).toMatch(/\[OBO_INVALID\]$/);
      expect(text(result)).toMatch(reason);
      const record = lastRecord();
      expect(record.error?.code).toBe('OBO_INVALID');
      expect(record.hops.find((h) => h.name === 'exchange')?.outcome).toBe('error');
      expect(record.hops.some((h) => h.name === 'vault_login')).toBe(false);
      expect(lab.vault.leases()).toBe(leasesBefore);
      // The next, honest OBO works again: the refusal was about that token, not a broken session.
      const again = (await client.callTool({
        name: 'query',
        arguments: { sql: 'SELECT 1 AS one' },
      })) as CallToolResult;
      expect(again.isError ?? false, text(again)).toBe(false);
    },
  );
});
