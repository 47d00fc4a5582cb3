import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runAuditCommand } from '../../../main/core/audit/command.ts';
import { AppError } from '../../../common/errors.ts';
import { CSV_COLUMNS, csvCell, exportLines, exportStream, parseCsv, writeExportFile } from '../../../main/core/audit/export.ts';
import { AuditStore, DB_FILE } from '../../../main/core/audit/store.ts';
import { memorySecretStore, tempDir, toolCall } from './fixtures.ts';

function sink(): { stream: Writable; text(): string } {
  let out = '';
  return {
    stream: new Writable({
      write(chunk: Buffer, _enc, cb) {
        out += chunk.toString();
        cb();
      },
    }),
    text: () => out,
  };
}

describe('export', () => {
  const dir = tempDir();
  let store: AuditStore;

  beforeAll(async () => {
    store = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore(), redaction: { hmacArgs: ['mrn'] } });
    for (let i = 0; i < 40; i++) await store.append(toolCall(i));
    await store.append(toolCall(40, { summary: '=HYPERLINK("http://evil.example","click"), then\n"quoted", more' }));
    await store.append({ kind: 'sign_out', outcome: 'success', user: { sub: 'user-1' } });
  });
  afterAll(async () => {
    await store.close();
    dir[Symbol.dispose]();
  });

  it('writes JSON Lines whose records are exactly the stored ones, oldest first', () => {
    const lines = [...exportLines(store, 'jsonl')];
    expect(lines).toHaveLength(42);
    const parsed = lines.map((l) => JSON.parse(l) as { seq: number });
    expect(parsed.map((r) => r.seq)).toEqual(Array.from({ length: 42 }, (_, i) => i + 1));
    for (const r of parsed) expect(r).toEqual(store.get(r.seq));
  });

  it('writes CSV with a header, RFC 4180 quoting, and the full record in its last column', () => {
    const rows = parseCsv([...exportLines(store, 'csv')].join(''));
    expect(rows[0]).toEqual([...CSV_COLUMNS]);
    expect(rows).toHaveLength(43);
    const last = CSV_COLUMNS.length - 1;
    for (const row of rows.slice(1)) {
      expect(row).toHaveLength(CSV_COLUMNS.length);
      const rec = JSON.parse(row[last]!) as { seq: number; hash: string };
      expect(rec).toEqual(store.get(Number(row[0])));
      expect(row[CSV_COLUMNS.indexOf('hash')]).toBe(rec.hash);
    }
  });

  it('defuses a summary a spreadsheet would run as a formula', () => {
    const rows = parseCsv([...exportLines(store, 'csv', { search: 'HYPERLINK' })].join(''));
    expect(rows).toHaveLength(2);
    const summary = rows[1]![CSV_COLUMNS.indexOf('summary')]!;
    expect(summary.startsWith("'=HYPERLINK")).toBe(true);
    expect(csvCell('-1+1')).toBe("'-1+1");
    expect(csvCell(-1)).toBe('-1');
    expect(csvCell('@SUM(A1)')).toBe("'@SUM(A1)");
  });

  it('exports only what the filter selects', () => {
    const lines = [...exportLines(store, 'jsonl', { outcome: ['denied'] })].map((l) => JSON.parse(l) as { outcome: string });
    expect(lines.length).toBe(store.count({ outcome: ['denied'] }));
    expect(lines.every((r) => r.outcome === 'denied')).toBe(true);
  });

  it('streams one consistent snapshot while appends continue', async () => {
    const it = exportLines(store, 'jsonl');
    const first = it.next();
    expect(first.done).toBe(false);
    const before = store.stats().count;
    await store.append(toolCall(100));
    const rest = [...it];
    expect(rest.length + 1).toBe(before);
  });

  it('streams to a writable with backpressure', async () => {
    const s = sink();
    await new Promise<void>((resolve, reject) => exportStream(store, 'jsonl').pipe(s.stream).on('finish', resolve).on('error', reject));
    expect(s.text().trim().split('\n')).toHaveLength(store.stats().count);
  });

  it('writes a file the person chose whole: owner-only, the same bytes as the stream, with the count of records', async () => {
    using out = tempDir('cs-export-');
    const jsonl = join(out.path, 'audit.jsonl');
    const written = await writeExportFile(store, 'jsonl', {}, jsonl);
    expect(readFileSync(jsonl, 'utf8')).toBe([...exportLines(store, 'jsonl')].join(''));
    expect(written).toEqual({ records: store.stats().count, bytes: statSync(jsonl).size });
    expect(statSync(jsonl).mode & 0o777).toBe(0o600);
    // the CSV's header is not a record, and a summary with a line break inside its quotes is still one
    const csv = join(out.path, 'audit.csv');
    const calls = [...exportLines(store, 'jsonl', { kind: ['tool_call'] })].length;
    expect((await writeExportFile(store, 'csv', { kind: ['tool_call'] }, csv)).records).toBe(calls);
    expect(parseCsv(readFileSync(csv, 'utf8'))).toHaveLength(calls + 1);
    expect(readdirSync(out.path).sort()).toEqual(['audit.csv', 'audit.jsonl']);
  });

  it('replaces a file only once the export is complete, and leaves it untouched when writing fails or is cancelled', async () => {
    using out = tempDir('cs-export-');
    const target = join(out.path, 'keep.jsonl');
    writeFileSync(target, 'what was there before\n');
    const cancelled = new AbortController();
    cancelled.abort();
    const error = await writeExportFile(store, 'jsonl', {}, target, cancelled.signal).catch((e: unknown) => e);
    expect(AppError.is(error, 'CANCELLED')).toBe(true);
    expect(readFileSync(target, 'utf8')).toBe('what was there before\n');
    expect(readdirSync(out.path)).toEqual(['keep.jsonl']);

    const missing = join(out.path, 'no-such-dir', 'audit.jsonl');
    const failed = await writeExportFile(store, 'jsonl', {}, missing).catch((e: unknown) => e);
    expect(AppError.is(failed, 'EXPORT_FAILED')).toBe(true);
    expect((failed as AppError).message).toContain('ENOENT');
    expect((failed as AppError).message).toContain('nothing was saved');

    // a directory where the file should go: the rename fails and the temporary file is removed
    mkdirSync(join(out.path, 'taken.jsonl'));
    const taken = await writeExportFile(store, 'jsonl', {}, join(out.path, 'taken.jsonl')).catch((e: unknown) => e);
    expect(AppError.is(taken, 'EXPORT_FAILED')).toBe(true);
    expect(readdirSync(out.path).sort()).toEqual(['keep.jsonl', 'taken.jsonl']);

    await writeExportFile(store, 'jsonl', {}, target);
    expect(readFileSync(target, 'utf8').trim().split('\n')).toHaveLength(store.stats().count);
  });
});

describe('countersign audit export|verify', () => {
  it('exports to a file and verifies an intact store with exit code 0', async () => {
    using dir = tempDir();
    const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore() });
    for (let i = 0; i < 5; i++) await s.append(toolCall(i));
    const out = join(dir.path, 'export.jsonl');
    const io = { stdout: sink(), stderr: sink() };
    const env = {};
    expect(await runAuditCommand(['export', '--format', 'jsonl', '--out', out, '--data-dir', dir.path], { stdout: io.stdout.stream, stderr: io.stderr.stream, env })).toBe(0);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const lines = readFileSync(out, 'utf8').trim().split('\n');
    expect(lines.map((l) => JSON.parse(l) as unknown)).toEqual([1, 2, 3, 4, 5].map((n) => s.get(n)));
    expect(await runAuditCommand(['verify', '--data-dir', dir.path], { stdout: io.stdout.stream, stderr: io.stderr.stream, env })).toBe(0);
    expect(io.stdout.text()).toContain('Intact: 5 records');
    await s.close();
  });

  it('exits 1 and names the first bad record when the chain is broken, and uses the anchors file', async () => {
    using dir = tempDir();
    const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore() });
    for (let i = 0; i < 6; i++) await s.append(toolCall(i));
    const anchor = (await s.checkpoint()).checkpoint.jws;
    const pub = s.publicKeyJwk();
    await s.close();
    writeFileSync(join(dir.path, 'anchors.txt'), anchor + '\n');
    writeFileSync(join(dir.path, 'key.jwk'), JSON.stringify(pub));
    const db = new DatabaseSync(join(dir.path, DB_FILE));
    db.prepare('DELETE FROM records WHERE seq > 4').run();
    db.prepare('DELETE FROM checkpoints').run();
    db.close();
    const out = sink();
    const io = { stdout: out.stream, stderr: sink().stream, env: {} };
    expect(await runAuditCommand(['verify', '--data-dir', dir.path], io)).toBe(0);
    const args = ['verify', '--json', '--anchors', join(dir.path, 'anchors.txt'), '--public-key', join(dir.path, 'key.jwk'), '--data-dir', dir.path];
    const before = out.text().length;
    expect(await runAuditCommand(args, io)).toBe(1);
    expect(JSON.parse(out.text().slice(before))).toMatchObject({ ok: false, firstBad: { seq: 5, kind: 'truncated' } });
  });

  it('exits 2 on a usage error or a missing store', async () => {
    using dir = tempDir();
    const err = sink();
    const io = { stdout: sink().stream, stderr: err.stream, env: {} };
    expect(await runAuditCommand(['frobnicate'], io)).toBe(2);
    expect(await runAuditCommand(['export', '--bogus'], io)).toBe(2);
    expect(await runAuditCommand(['verify', '--data-dir', dir.path], io)).toBe(2);
    expect(err.text()).toContain('No audit store');
  });
});
