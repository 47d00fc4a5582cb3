import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { closeAbortedCalls } from '../../../main/core/app.ts';
import { JOURNAL_FILE, SqliteCallJournal } from '../../../main/core/audit/journal.ts';
import { AuditStore } from '../../../main/core/audit/store.ts';
import { MemorySecretStore } from '../../../main/core/secrets/memory-store.ts';

const quiet = { info() {}, warn() {}, error() {} };
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cs-journal-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the journal of calls in flight', () => {
  it('forgets a call once it ends, and keeps one whose core died', () => {
    const first = new SqliteCallJournal(dir);
    first.begin('a', { tool: 'query', startedAt: '2026-11-22T00:00:00Z', user: { sub: 'alice' }, keys: { mcp_request_id: 1 } });
    first.begin('b', { tool: 'execute', startedAt: '2026-11-22T00:00:01Z', user: { sub: 'alice' }, keys: { mcp_request_id: 2 } });
    first.note('b', { tier: 2, target: 'postgres://lab/clinic', keys: { obo_jti: 'jti-b', db_role: 'v-role-b' } });
    first.end('a');
    first.close(); // the process dies here, without ending b
    const next = new SqliteCallJournal(dir);
    expect(next.orphans()).toEqual([
      {
        id: 'b',
        entry: expect.objectContaining({ tool: 'execute', tier: 2, keys: { mcp_request_id: 2, obo_jti: 'jti-b', db_role: 'v-role-b' } }),
      },
    ]);
    next.close();
  });

  it('closes each orphan on the timeline as aborted, once, with its join keys', async () => {
    const journal = new SqliteCallJournal(dir);
    journal.begin('c', { tool: 'query', startedAt: '2026-11-22T00:00:00Z', user: { sub: 'alice' }, tier: 1, keys: { mcp_request_id: 7, obo_jti: 'jti-c' } });
    const audit = await AuditStore.open({ dataDir: dir, secrets: new MemorySecretStore('test') });
    expect(await closeAbortedCalls(journal, audit, quiet)).toBe(1);
    expect(await closeAbortedCalls(journal, audit, quiet)).toBe(0);
    const { records } = audit.page({ limit: 10 });
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ kind: 'tool_call', outcome: 'aborted', tool: 'query', keys: { mcp_request_id: 7, obo_jti: 'jti-c' } });
    expect((await audit.verify()).ok).toBe(true);
    journal.close();
    await audit.close();
    // Only join keys are journalled: nothing in the file looks like a JWT.
    expect(await readFile(path.join(dir, JOURNAL_FILE), 'latin1')).not.toMatch(/eyJ[\w-]+\.[\w-]+\.[\w-]+/);
  });
});
