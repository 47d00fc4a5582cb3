/**
 * The broker's record writer against the real audit store (file-backed, hash chain, synced commits):
 * a record the store cannot take as it is (it does not validate or serialise) is replaced by a stand-in
 * at once, so every call still gets exactly one record and the records behind it are not held up.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { AuditStore } from '../../../main/core/audit/store.ts';
import { createRecordWriter } from '../../../main/core/broker/record-writer.ts';
import { CallTrace } from '../../../main/core/broker/call-trace.ts';
import { memorySecretStore, tempDir, toolCall } from '../audit/fixtures.ts';

const open: Array<{ store: AuditStore; dir: { [Symbol.dispose](): void } }> = [];
afterEach(async () => {
  for (const o of open.splice(0)) {
    await o.store.close();
    o.dir[Symbol.dispose]();
  }
});

async function writerOnStore() {
  const dir = tempDir('cs-record-writer-');
  const store = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore() });
  open.push({ store, dir });
  const lines: string[] = [];
  return { store, lines, writer: createRecordWriter(store, (l) => lines.push(l)) };
}

/** Arguments nested `depth` levels, built as the socket would hand them over: parsed from JSON. */
const nested = (depth: number): Record<string, unknown> => JSON.parse(`{"sql":"SELECT 1","extra":${'['.repeat(depth)}"x"${']'.repeat(depth)}}`) as Record<string, unknown>;

describe('a record the audit store cannot take as it is', () => {
  it('is stored as a stand-in without its arguments, and the next record is written as usual', async () => {
    const { store, writer } = await writerOnStore();
    const deep = await writer.write(toolCall(1, { args: nested(20_000), keys: { mcp_request_id: 'deep' } }), new CallTrace(), 'deep');
    expect(deep.audited).toBe(true);
    expect(deep.refused?.code).toBe('INPUT_INVALID');
    const next = await writer.write(toolCall(2, { keys: { mcp_request_id: 'next' } }), new CallTrace(), 'next');
    expect(next).toEqual({ audited: true });

    const records = store.page({ limit: 10 }).records.reverse();
    expect(records.map((r) => r.keys?.mcp_request_id)).toEqual(['deep', 'next']);
    expect(records[0]).toMatchObject({ outcome: 'error', error: { code: 'AUDIT_FAILED' } });
    expect(records[0]!.args).toBeUndefined();
    expect(records[0]!.summary).toMatch(/recorded without its arguments and details/);
    expect(records[1]!.args).toEqual(toolCall(2).args);
    expect((await store.verify()).ok).toBe(true);
  });

  it('holds a record the store refused for want of room, and writes it before the next (a full disk is not a bad record)', async () => {
    const { store, writer, lines } = await writerOnStore();
    await store.close();
    const held = await writer.write(toolCall(1, { keys: { mcp_request_id: 'held' } }), new CallTrace(), 'held');
    expect(held).toEqual({ audited: false });
    expect(lines.some((l) => l.includes('1 record(s) held until the store takes them'))).toBe(true);
  });
});
