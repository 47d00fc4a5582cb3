/**
 * Vault Enterprise native agent mode end to end: the composed core (vault.mode "agent") signs in
 * (Chromium plays the system browser), an MCP SDK client spawns the bridge as Claude Desktop does, and
 * a tier-1 query and a tier-2 write each go exchange (one OBO carrying the call's entry and its Vault
 * paths) → the OBO itself as X-Vault-Token for the creds → PostgreSQL → the lease revoked with the same
 * OBO → record; and the API-key upstream's tool reads its key from KV v2 with the OBO the same way.
 * Vault's own audit log carries the OBO's jti and the actor, so both logs join.
 */
import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { labAppConfig } from '../../lab/app-config.ts';
import { startLab, type Lab } from '../../lab/index.ts';
import type { Core } from '../../main/core/app.ts';
import { ScriptedPrompterForTests } from '../../main/core/approvals/prompter.ts';
import { parseAppConfig } from '../../main/core/config/config.ts';
import { launchBrowser, type LabBrowser } from '../helpers/browser.ts';
import { connectBridge, startLabCore, stopAll } from '../helpers/lab-core.ts';

const text = (r: CallToolResult) => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('');

let browser: LabBrowser;
let lab: Lab;
let home: string;
let core: Core;
let client: Client;
let admin: pg.Pool;
const prompter = new ScriptedPrompterForTests();

beforeAll(async () => {
  [browser, lab, home] = await Promise.all([launchBrowser(), startLab(), mkdtemp(join(tmpdir(), 'countersign-agent-mode-'))]);
  const base = labAppConfig(lab);
  // The lab's Vault registers the app's own client as the agent: this install signs in as that client.
  const config = labAppConfig(lab, { idp: { ...base.idp, dynamicRegistration: 'off' }, vault: { ...base.vault, mode: 'agent' } });
  core = await startLabCore({ lab, home, browser, prompter, config: parseAppConfig(config, 'lab configuration (agent mode)') });
  await core.handlers['session.signIn']({});
  client = await connectBridge(home, { name: 'claude-ai', version: '0.0.0-agent-mode' });
  admin = new pg.Pool({ connectionString: lab.postgresAdminUrl, max: 1 });
  admin.on('error', () => {});
}, 120_000);

afterAll(() => stopAll([client, admin, core, lab, browser], home), 60_000);

function vaultLinesFor(jti: string): Array<{ auth: { metadata: Record<string, string> }; request: { path: string }; error?: string }> {
  return readFileSync(lab.vaultAuditLogPath, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l))
    .filter((e) => e.type === 'response' && e.auth?.metadata?.jwt_unique_id === jti);
}

describe('native agent mode through the bridge', () => {
  it.each([
    ['a tier-1 query', 'query', 'SELECT count(*)::int AS n FROM appointments', 'clinic-read'],
    ['a tier-2 write (approved)', 'execute', "UPDATE appointments SET status = 'completed' WHERE id = 3", 'clinic-write'],
  ])('runs %s with the OBO straight to Vault: no login, the role minted and gone, Vault’s audit joined by jti', async (_what, tool, sql, role) => {
    if (tool === 'execute') prompter.push('approve');
    const result = (await client.callTool({ name: tool, arguments: { sql } })) as CallToolResult;
    expect(result.isError ?? false, text(result)).toBe(false);

    const record = core.audit.page({ filter: { tool }, limit: 1 }).records[0]!;
    expect(record.outcome).toBe('success');
    const names = record.hops.map((h) => h.name);
    expect(names).not.toContain('vault_login');
    for (const hop of ['exchange', 'vault_creds', 'execute', 'revoke', 'revoke_check']) expect(record.hops.find((h) => h.name === hop)?.outcome, hop).toBe('ok');
    expect(record.hops.find((h) => h.name === 'revoke')!.detail).toMatch(/^mode=agent lease revoked with the OBO/);
    expect(record.keys.vault_accessor).toBeUndefined();
    expect(record.keys.lease_id).toMatch(new RegExp(`^database/creds/${role}/`));

    // The per-call role is gone, and Vault holds no lease.
    expect(record.keys.db_role).toMatch(/^v-/);
    expect((await admin.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [record.keys.db_role])).rowCount).toBe(0);
    expect(lab.vault.leases()).toBe(0);

    const lines = vaultLinesFor(record.keys.obo_jti!);
    expect(lines.map((l) => l.request.path)).toEqual([`database/creds/${role}`, 'sys/leases/revoke']);
    for (const l of lines) {
      expect(l.error).toBeUndefined();
      expect(l.auth.metadata['actor_entity_name']).toBe(`agent-${lab.idp.nativeClientId}`);
      expect(l.auth.metadata['jwt_issuer']).toBe(lab.issuer.toLowerCase().replace(/\/+$/, ''));
    }
  });

  it('runs the API-key upstream’s tool with the OBO straight to KV v2: its RAR names the secret’s path, no login, no lease', async () => {
    const result = (await client.callTool({ name: 'quotes__get_quote', arguments: { symbol: 'ACME' } })) as CallToolResult;
    expect(result.isError ?? false, text(result)).toBe(false);
    expect(text(result)).toContain('ACME');

    const record = core.audit.page({ filter: { tool: 'quotes__get_quote' }, limit: 1 }).records[0]!;
    expect(record.outcome).toBe('success');
    expect(record.hops.map((h) => h.name)).toEqual(['validate', 'classify', 'approval', 'exchange', 'vault_creds', 'execute']);
    expect(record.keys.vault_accessor).toBeUndefined();
    expect(record.keys.lease_id).toBeUndefined();
    const lines = vaultLinesFor(record.keys.obo_jti!);
    expect(lines.map((l) => [l.request.path, l.error])).toEqual([['secret/data/upstreams/apikey-demo', undefined]]);
    expect(lines[0]!.auth.metadata['actor_entity_name']).toBe(`agent-${lab.idp.nativeClientId}`);
    expect(JSON.parse(lines[0]!.auth.metadata['jwt_authorization_details']!)).toContainEqual({ type: 'vault:path_access', path: 'secret/data/upstreams/apikey-demo', capabilities: ['read'] });
  });
});
