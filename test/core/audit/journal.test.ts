import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { closeAbortedCalls } from '../../../main/core/broker/aborted-calls.ts';
import { JOURNAL_FILE, SqliteCallJournal } from '../../../main/core/audit/journal.ts';
import type { CallJournal } from '../../../main/core/ports.ts';
import { AuditStore } from '../../../main/core/audit/store.ts';
import { MemorySecretStore } from '../../../main/core/secrets/memory-store.ts';
import { createVaultClient } from '../../../main/core/vault/client.ts';
import { startVault } from '../../../lab/vault/index.ts';
import { scanForSecrets, describeHits } from '../../helpers/secret-scan.ts';

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

  it('does not record a call twice when the core died after its record was written but before its entry was closed', async () => {
    const journal = new SqliteCallJournal(dir);
    const startedAt = new Date().toISOString();
    journal.begin('e', { tool: 'query', startedAt, user: { sub: 'alice' }, tier: 1, keys: { mcp_session_id: 's1', mcp_request_id: 9 } });
    journal.begin('f', { tool: 'query', startedAt, user: { sub: 'alice' }, tier: 1, keys: { mcp_session_id: 's1', mcp_request_id: 10 } });
    const audit = await AuditStore.open({ dataDir: dir, secrets: new MemorySecretStore('test') });
    // e's own record made it to the store; the process died before journal.end('e').
    await audit.append({ kind: 'tool_call', outcome: 'success', user: { sub: 'alice' }, tool: 'query', tier: 1, hops: [], keys: { mcp_session_id: 's1', mcp_request_id: 9 }, summary: 'query: done' });
    expect(await closeAbortedCalls(journal, audit, quiet)).toBe(1);
    expect(journal.orphans()).toEqual([]);
    const { records } = audit.page({ limit: 10 });
    expect(records.map((r) => [r.keys.mcp_request_id, r.outcome]).sort()).toEqual([
      [10, 'aborted'],
      [9, 'success'],
    ]);
    journal.close();
    await audit.close();
  });

  it("looks for a dead call's own record among the records written since it started, however many came after it", async () => {
    let clock = Date.parse('2026-11-22T10:00:00Z');
    const audit = await AuditStore.open({ dataDir: dir, secrets: new MemorySecretStore('test'), now: () => clock });
    const call = (id: number, outcome: 'success' | 'aborted') =>
      audit.append({ kind: 'tool_call', outcome, user: { sub: 'alice' }, tool: 'query', tier: 1, hops: [], keys: { mcp_session_id: 's1', mcp_request_id: id }, summary: 'query' });
    await call(1, 'success'); // before the window
    clock += 60_000;
    const since = clock;
    await call(2, 'success');
    await call(3, 'aborted');
    for (let i = 100; i < 150; i++) await call(i, 'success');
    expect(audit.hasCallRecord('s1', 2, since)).toBe(true);
    expect(audit.hasCallRecord('s1', 149, since)).toBe(true);
    expect(audit.hasCallRecord('s1', 1, since)).toBe(false);
    expect(audit.hasCallRecord('s1', 1, since - 60_000)).toBe(true);
    expect(audit.hasCallRecord('s1', 3, since)).toBe(false);
    expect(audit.hasCallRecord('s2', 2, since)).toBe(false);
    expect(audit.hasCallRecord('s1', '2', since)).toBe(false);
    await audit.close();
  });

  it('seals the Vault token it holds: the file has it in no form, the same key opens it, another key does not', async () => {
    const key = new Uint8Array(32).fill(7);
    const token = 'hvs.' + 'A1b2C3d4E5f6G7h8I9j0K1l2';
    const journal = new SqliteCallJournal(dir, { sealKey: key });
    journal.begin('d', { tool: 'query', startedAt: '2026-11-22T00:00:00Z', user: { sub: 'alice' }, keys: { mcp_request_id: 8 } });
    journal.holdCredential('d', token);
    journal.close();
    const hits = await scanForSecrets({ token }, [{ kind: 'dir', path: dir }]);
    expect(hits, describeHits(hits)).toEqual([]);
    const again = new SqliteCallJournal(dir, { sealKey: key });
    const [{ id, entry }] = again.orphans() as [{ id: string; entry: Parameters<SqliteCallJournal['unsealVaultToken']>[1] }];
    expect(entry.sealedVaultToken).toBeTruthy();
    expect(again.unsealVaultToken(id, entry)).toBe(token);
    // Moved to another call's row, it does not open (the call id is bound in).
    expect(again.unsealVaultToken('other', entry)).toBeUndefined();
    again.close();
    const stranger = new SqliteCallJournal(dir, { sealKey: new Uint8Array(32).fill(9) });
    expect(stranger.unsealVaultToken(id, entry)).toBeUndefined();
    stranger.close();
  });

  it('notes the keys learnt with the Vault token in the same write as the sealed token, and notes them without a sealing key too', () => {
    const sealing = new SqliteCallJournal(dir, { sealKey: new Uint8Array(32).fill(7) });
    sealing.begin('g', { tool: 'query', startedAt: '2026-11-22T00:00:00Z', user: { sub: 'alice' }, keys: { mcp_request_id: 10, obo_jti: 'jti-g' } });
    sealing.holdCredential('g', 'hvs.' + 'Z9y8X7w6V5u4T3s2R1q0P9o8', { vault_accessor: 'acc-g' });
    sealing.close(); // the process dies before any other note
    const again = new SqliteCallJournal(dir, { sealKey: new Uint8Array(32).fill(7) });
    const [g] = again.orphans();
    expect(g!.entry.keys).toEqual({ mcp_request_id: 10, obo_jti: 'jti-g', vault_accessor: 'acc-g' });
    expect(again.unsealVaultToken(g!.id, g!.entry)).toBe('hvs.' + 'Z9y8X7w6V5u4T3s2R1q0P9o8');
    again.end('g');
    again.close();
    const plain = new SqliteCallJournal(dir);
    plain.begin('h', { tool: 'query', startedAt: '2026-11-22T00:00:00Z', user: { sub: 'alice' }, keys: {} });
    plain.holdCredential('h', 'hvs.never-kept-anywhere-5678', { vault_accessor: 'acc-h' });
    const [h] = plain.orphans();
    expect(h!.entry.keys).toEqual({ vault_accessor: 'acc-h' });
    expect(h!.entry.sealedVaultToken).toBeUndefined();
    plain.close();
  });

  it('holds no token at all without a sealing key', () => {
    const journal = new SqliteCallJournal(dir);
    journal.begin('e', { tool: 'query', startedAt: '2026-11-22T00:00:00Z', user: { sub: 'alice' }, keys: {} });
    journal.holdCredential('e', 'hvs.never-kept-anywhere-1234');
    expect(journal.orphans()[0]!.entry.sealedVaultToken).toBeUndefined();
    journal.close();
  });

  it('revokes, on restart, the Vault token a killed run held (Vault stand-in over HTTP), and says so in the aborted record', async () => {
    const vault = await startVault();
    const client = createVaultClient({ address: vault.addr, timeoutMs: 5_000 });
    try {
      const created = await fetch(`${vault.addr}/v1/auth/token/create`, { method: 'POST', headers: { 'x-vault-token': vault.rootToken }, body: JSON.stringify({ ttl: '60s', policies: ['default'] }) });
      const token = ((await created.json()) as { auth: { client_token: string } }).auth.client_token;
      expect((await client.lookupSelf(token)).ttl).toBeGreaterThan(0);
      const audit = await AuditStore.open({ dataDir: dir, secrets: new MemorySecretStore('test') });
      const journal = new SqliteCallJournal(dir, { sealKey: audit.installKeys!.hmacKey });
      journal.begin('f', { tool: 'query', startedAt: '2026-11-22T00:00:00Z', user: { sub: 'alice' }, keys: { mcp_request_id: 9 } });
      journal.holdCredential('f', token);
      expect(await closeAbortedCalls(journal, audit, quiet, client)).toBe(1);
      await expect(client.lookupSelf(token)).rejects.toMatchObject({ code: 'VAULT_PERMISSION_DENIED' });
      const [record] = audit.page({ limit: 1 }).records;
      expect(record).toMatchObject({ outcome: 'aborted', hops: [{ name: 'revoke', outcome: 'ok', detail: 'revoked on restart' }] });
      expect(record!.summary).toContain('revoked on restart');
      journal.close();
      await audit.close();
    } finally {
      await client.close();
      await vault.stop();
    }
  });
});

describe("a call's notes made in the next turn (CallTrace.journalSoon)", () => {
  it('reach the journal file within a turn, or before the next write of the call, in the order they were made', async () => {
    const { CallTrace } = await import('../../../main/core/broker/call-trace.ts');
    const journal = new SqliteCallJournal(dir, { sealKey: new Uint8Array(32).fill(7) });
    const order: string[] = [];
    const seen: CallJournal = {
      begin: (i, e) => journal.begin(i, e),
      note: (i, u) => (order.push(`note ${Object.keys(u).join(',')}`), journal.note(i, u)),
      holdCredential: (i, t, k) => (order.push('hold'), journal.holdCredential(i, t, k)),
      end: (i) => (order.push('end'), journal.end(i)),
    };
    // What another process would find in the file now (the core killed at this instant).
    const onDisk = () => {
      const other = new SqliteCallJournal(dir);
      try {
        return other.orphans().map((o) => o.entry);
      } finally {
        other.close();
      }
    };
    const trace = new CallTrace(seen);
    seen.begin(trace.id, { tool: 'query', startedAt: new Date().toISOString(), user: { sub: 'alice' }, keys: { mcp_request_id: 1 } });
    trace.journalSoon((j) => j.note(trace.id, { tier: 1, target: 'postgres://lab/clinic' }));
    expect(onDisk()[0]!.tier).toBeUndefined();
    await new Promise((r) => setImmediate(r));
    expect(onDisk()[0]).toMatchObject({ tier: 1, target: 'postgres://lab/clinic' });

    trace.keys.obo_jti = 'jti-1';
    trace.noteKeysSoon();
    trace.keys.vault_accessor = 'accessor-1';
    // A write that must be made at once takes the notes due before it along, first.
    trace.journal((j) => j.holdCredential!(trace.id, 'hvs.sealed-token-value-000000', trace.keys));
    expect(order).toEqual(['note tier,target', 'note keys', 'hold']);
    expect(onDisk()[0]).toMatchObject({ keys: { obo_jti: 'jti-1', vault_accessor: 'accessor-1' } });
    await new Promise((r) => setImmediate(r));
    expect(order).toHaveLength(3);
    journal.close();
  });
});
