/**
 * The session through the composed core (startCore) on the whole lab: sign-in registers this install
 * as its own client and the broker's token exchange presents that client; sign-out is recorded in the
 * audit store and forgets every approval the session held (cached and waiting).
 */
import { readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLab, type Lab } from '../../../lab/index.ts';
import type { Core } from '../../../main/core/app.ts';
import { ScriptedPrompterForTests } from '../../../main/core/approvals/prompter.ts';
import { AuthService } from '../../../main/core/auth/auth-service.ts';
import type { ToolCallRequest } from '../../../main/core/connectors/types.ts';
import { launchBrowser, type LabBrowser } from '../../helpers/browser.ts';
import { startLabCore } from '../../helpers/lab-core.ts';

let lab: Lab;
let browser: LabBrowser;
let home: string;
let core: Core;
const prompter = new ScriptedPrompterForTests();
const labLog: string[] = [];
let requestId = 1;
/** Plays the desktop shell's native save dialog for `audit.saveExport`. */
let chooseExportFile: (suggested: { filename: string; format: 'jsonl' | 'csv' }) => Promise<string | undefined> = async () => undefined;

const WRITE = { sql: 'UPDATE appointments SET status = $1 WHERE id = $2', params: ['completed', 1] };

function call(name: string, args: Record<string, unknown>): ToolCallRequest {
  return {
    name,
    args,
    requestId: requestId++,
    sessionId: 'core-session-test',
    client: { name: 'vitest', version: '1' },
    signal: new AbortController().signal,
    progress: () => {},
  };
}

const text = (r: CallToolResult) => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('');

beforeAll(async () => {
  [lab, browser, home] = await Promise.all([startLab({ log: (l) => labLog.push(l) }), launchBrowser(), mkdtemp(join(tmpdir(), 'countersign-core-session-'))]);
  // Chromium plays the system browser: it logs in as alice on the lab IdP's page.
  core = await startLabCore({ lab, home, browser, prompter, chooseExportFile: (suggested) => chooseExportFile(suggested) });
}, 60_000);

afterAll(async () => {
  await core?.stop();
  await browser?.close();
  await lab?.stop();
  if (home) await rm(home, { recursive: true, force: true });
}, 60_000);

describe('the core signed in with a per-install registered client', () => {
  let registeredId: string;

  it('signs in as a client registered for this install, and the broker exchanges as that client', async () => {
    const { user } = await core.handlers['session.signIn']({});
    expect(user.sub).toBe(lab.users.find((u) => u.username === 'alice')!.sub);
    expect(core.auth).toBeInstanceOf(AuthService);
    const client = await (core.auth as AuthService).client();
    expect(client.authMethod).toBe('private_key_jwt');
    expect(client.clientId).not.toBe(lab.idp.nativeClientId);
    registeredId = client.clientId;
    expect(decodeJwt(await core.auth.getAccessToken()).client_id).toBe(registeredId);

    const result = await core.broker.callTool(call('query', { sql: 'SELECT count(*) AS n FROM appointments' }));
    expect(result.isError, text(result)).toBeFalsy();
    const record = core.audit.page({ filter: { tool: 'query' }, limit: 1 }).records[0]!;
    const jti = record.keys.obo_jti!;
    expect(jti).toBeTruthy();
    // The IdP says which client it issued this call's OBO to (act.sub and client_id).
    const issued = labLog.find((l) => l.startsWith('idp: obo issued') && l.includes(`jti=${jti} `));
    expect(issued).toContain(`client=${registeredId} `);
  });

  it('records the sign-out and forgets a cached tier-2 approval, so the next write asks again', async () => {
    prompter.push('approve');
    const first = await core.broker.callTool(call('execute', WRITE));
    expect(first.isError, text(first)).toBeFalsy();
    expect(prompter.shown).toHaveLength(1);
    const covered = await core.broker.callTool(call('execute', WRITE));
    expect(covered.isError, text(covered)).toBeFalsy();
    expect(prompter.shown).toHaveLength(1);
    expect(core.approvals.cached()).toHaveLength(1);

    // Sign-out from the session itself (not the UI's handler): the core's onSignOut wiring must clear.
    await core.auth.signOut();
    expect(core.approvals.cached()).toEqual([]);
    const out = core.audit.page({ limit: 5 }).records.find((r) => r.kind === 'sign_out');
    expect(out).toMatchObject({ kind: 'sign_out', outcome: 'success', user: { sub: registeredUserSub() }, demo: true });
    expect(core.status().session).toEqual({ state: 'signed_out' });
    const refused = await core.broker.callTool(call('execute', WRITE));
    expect(refused.isError).toBe(true);

    await core.handlers['session.signIn']({});
    prompter.push('approve');
    const again = await core.broker.callTool(call('execute', WRITE));
    expect(again.isError, text(again)).toBeFalsy();
    expect(prompter.shown).toHaveLength(2);
    // The same install signs in again: the same registered client.
    expect((await (core.auth as AuthService).client()).clientId).toBe(registeredId);
  });

  it('denies an approval still waiting when the person signs out from the UI, and records the sign-out', async () => {
    prompter.push('wait');
    const shownBefore = prompter.shown.length;
    const write = core.broker.callTool(call('execute', { ...WRITE, sql: 'UPDATE notes SET body = $1 WHERE id = $2', params: ['checked', 1] }));
    await expect.poll(() => core.approvals.pending().length, { timeout: 10_000 }).toBe(1);
    expect(prompter.shown.length).toBe(shownBefore + 1);
    const before = core.audit.page({}).records.filter((r) => r.kind === 'sign_out').length;

    expect(await core.handlers['session.signOut']({})).toEqual({ ok: true });
    const result = await write;
    expect(result.isError).toBe(true);
    expect(core.approvals.pending()).toEqual([]);
    expect(core.approvals.cached()).toEqual([]);
    expect(core.audit.page({}).records.filter((r) => r.kind === 'sign_out')).toHaveLength(before + 1);
    const record = core.audit.page({ filter: { tool: 'execute' }, limit: 1 }).records[0]!;
    expect(record.hops.find((h) => h.name === 'approval')?.outcome).toBe('denied');
  });
});

function registeredUserSub(): string {
  return lab.users.find((u) => u.username === 'alice')!.sub;
}

describe("the desktop app's export through the save dialog", () => {
  it('writes the chosen file from the store, says nothing was saved when the dialog is cancelled, and refuses a relative path', async () => {
    const asked: Array<{ filename: string; format: string }> = [];
    chooseExportFile = async (suggested) => (asked.push(suggested), undefined);
    expect(await core.handlers['audit.saveExport']({ format: 'jsonl', filter: {} })).toEqual({ saved: false });
    expect(asked[0]).toMatchObject({ format: 'jsonl', filename: expect.stringMatching(/^countersign-audit-.+\.jsonl$/) });

    const path = join(home, 'chosen.jsonl');
    chooseExportFile = async () => path;
    const saved = await core.handlers['audit.saveExport']({ format: 'jsonl', filter: { kind: ['tool_call'] } });
    const lines = readFileSync(path, 'utf8').trim().split('\n');
    expect(saved).toEqual({ saved: true, path, records: lines.length, bytes: statSync(path).size });
    expect(lines.length).toBeGreaterThan(0);
    for (const line of lines) {
      const record = JSON.parse(line) as { seq: number; kind: string };
      expect(record.kind).toBe('tool_call');
      expect(record).toEqual(core.audit.get(record.seq));
    }

    chooseExportFile = async () => 'relative/audit.jsonl';
    await expect(core.handlers['audit.saveExport']({ format: 'csv', filter: {} })).rejects.toMatchObject({ code: 'EXPORT_FAILED' });
  });
});
