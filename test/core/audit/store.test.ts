import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditRecord } from '../../../common/audit-record.ts';
import { AppError } from '../../../common/errors.ts';
import { MIGRATIONS } from '../../../main/core/audit/schema.ts';
import { AUDIT_COUNT_CAP, AuditStore, DB_FILE, GENESIS_HASH, sha256 } from '../../../main/core/audit/store.ts';
import { canonicalJson } from '../../../common/canonical-json.ts';
import { StoreDb } from '../../../main/core/audit/db.ts';
import { memorySecretStore, tempDir, toolCall } from './fixtures.ts';

describe('appending and reading', () => {
  const dir = tempDir();
  let store: AuditStore;
  const seen: AuditRecord[] = [];

  beforeAll(async () => {
    let t = Date.parse('2026-01-01T00:00:00Z');
    store = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore(), now: () => (t += 60_000) });
    store.onAppend((r) => seen.push(r));
    for (let i = 0; i < 200; i++) await store.append(toolCall(i));
  });
  afterAll(async () => {
    await store.close();
    dir[Symbol.dispose]();
  });

  it('chains each record to the previous one by the SHA-256 of its canonical JSON', () => {
    const first = store.get(1)!;
    expect(first.prev_hash).toBe(GENESIS_HASH);
    const { hash, ...unhashed } = store.get(2)!;
    expect(hash).toBe(sha256(canonicalJson(unhashed)));
    expect(unhashed.prev_hash).toBe(first.hash);
  });

  it('returns from get() exactly what append() returned and told its listeners', () => {
    expect(seen).toHaveLength(200);
    expect(store.get(37)).toStrictEqual(seen[36]);
    expect(store.get(999)).toBeNull();
  });

  it('pages newest first with a seq cursor that reaches the oldest record exactly once', () => {
    const all: number[] = [];
    let before: number | undefined;
    for (;;) {
      const p = store.page({ limit: 64, ...(before ? { before } : {}) });
      all.push(...p.records.map((r) => r.seq));
      if (p.next_before === null) break;
      before = p.next_before;
    }
    expect(all).toEqual(Array.from({ length: 200 }, (_, i) => 200 - i));
  });

  it('filters by outcome, tier, tool and kind, and counts what it filters', () => {
    const p = store.page({ filter: { outcome: ['denied'], tool: 'delete_patient' }, limit: 500 });
    const expected = Array.from({ length: 200 }, (_, i) => i)
      .filter((i) => i % 8 === 3 && i % 5 === 3)
      .map((i) => i + 1)
      .reverse();
    expect(p.records.map((r) => r.seq)).toEqual(expected);
    expect(p.total).toBe(expected.length);
    expect(store.count({ tier: [2, 3] })).toBe(100);
    expect(store.count({ kind: ['sign_in'] })).toBe(0);
    expect(store.count()).toBe(200);
  });

  it('filters by the user as a person names them: sub, name or email', () => {
    const bySub = store.page({ filter: { user: 'user-3' }, limit: 500 }).records.map((r) => r.seq);
    expect(bySub.length).toBeGreaterThan(0);
    expect(store.page({ filter: { user: 'USER3@clinic.example' }, limit: 500 }).records.map((r) => r.seq)).toEqual(bySub);
    expect(store.page({ filter: { user: 'User 3' }, limit: 500 }).records.map((r) => r.seq)).toEqual(bySub);
    expect(store.page({ filter: { user: 'nobody' } }).records).toEqual([]);
  });

  it('filters by a time window, inclusive at both ends', () => {
    const from = store.get(10)!.at;
    const to = store.get(20)!.at;
    expect(store.page({ filter: { from, to }, limit: 500 }).records.map((r) => r.seq)).toEqual(Array.from({ length: 11 }, (_, i) => 20 - i));
    expect(store.page({ filter: { from: '2030-01-01T00:00:00Z' } }).records).toEqual([]);
  });

  it('finds records by whole words in the tool, summary, join keys and arguments', () => {
    expect(store.page({ filter: { search: 'jti-42' } }).records.map((r) => r.seq)).toEqual([43]);
    expect(store.page({ filter: { search: 'jti-4' } }).records.map((r) => r.seq)).toEqual([5]);
    expect(store.page({ filter: { search: 'v-jwt-clinic-199' } }).records.map((r) => r.seq)).toEqual([200]);
    const upd = store.page({ filter: { search: 'update_appointment', outcome: ['denied'] }, limit: 500 }).records;
    expect(upd.length).toBe(5);
    expect(upd.every((r) => r.tool === 'update_appointment' && r.outcome === 'denied')).toBe(true);
    expect(store.page({ filter: { search: 'update_app' } }).records).toEqual([]);
  });

  it('matches a word ending in * as a prefix', () => {
    expect(store.page({ filter: { search: 'update_app*', outcome: ['denied'] }, limit: 500 }).records).toHaveLength(5);
    expect(store.page({ filter: { search: 'jti-4*' } }).records.map((r) => r.seq).sort((a, b) => a - b)).toEqual([5, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50]);
  });

  it('treats search text as words, never as query syntax', () => {
    expect(() => store.page({ filter: { search: '" OR * NEAR( -- ) AND' } })).not.toThrow();
    // Nothing searchable left: no text filter at all.
    expect(store.page({ filter: { search: '"")(*' } }).records).toHaveLength(100);
  });

  it('skips rows with offset for random access under a pinned head', () => {
    const p = store.page({ before: 101, offset: 10, limit: 5 });
    expect(p.records.map((r) => r.seq)).toEqual([90, 89, 88, 87, 86]);
    expect(p.total).toBe(100);
    expect(p.head).toBe(200);
    expect(store.page({ offset: 198, limit: 5 }).records.map((r) => r.seq)).toEqual([2, 1]);
    const f = store.page({ before: 101, offset: 2, limit: 3, filter: { outcome: ['denied'] } });
    expect(f.records.map((r) => r.seq)).toEqual([84, 76, 68]);
    expect(f.total).toBe(13);
  });

  it('rejects a malformed record without writing anything', async () => {
    const before = store.stats().count;
    await expect(store.append({ kind: 'tool_call', outcome: 'exploded', user: null } as never)).rejects.toMatchObject({ code: 'INPUT_INVALID' });
    expect(store.stats().count).toBe(before);
  });

  it('rejects a malformed query with INPUT_INVALID', () => {
    expect(() => store.page({ limit: 100000 })).toThrow(AppError);
    expect(() => store.page({ filter: { from: 'yesterday-ish' } })).toThrow(expect.objectContaining({ code: 'INPUT_INVALID' }));
  });

  it('commits concurrent appends together in call order, refusing only the malformed one', async () => {
    using dir2 = tempDir();
    const s = await AuditStore.open({ dataDir: dir2.path, secrets: memorySecretStore() });
    const calls = Array.from({ length: 30 }, (_, i) =>
      i === 13 ? s.append({ kind: 'tool_call', outcome: 'nope', user: null } as never) : s.append(toolCall(i)),
    );
    const results = await Promise.allSettled(calls);
    expect(results[13]).toMatchObject({ status: 'rejected', reason: { code: 'INPUT_INVALID' } });
    const seqs = results.filter((r) => r.status === 'fulfilled').map((r) => r.value.seq);
    expect(seqs).toEqual(Array.from({ length: 29 }, (_, i) => i + 1));
    expect(s.get(14)!.summary).toBe('search_docs #14');
    expect(await s.verify()).toMatchObject({ ok: true, checked: 29 });
    await s.close();
  });

  it('keeps time monotonic in seq even when the clock steps back', async () => {
    const dir2 = tempDir();
    using _ = dir2;
    let t = 2_000_000;
    const s = await AuditStore.open({ dataDir: dir2.path, secrets: memorySecretStore(), now: () => (t -= 1000) });
    const a = await s.append(toolCall(1));
    const b = await s.append(toolCall(2));
    expect(Date.parse(b.at)).toBeGreaterThanOrEqual(Date.parse(a.at));
    await s.close();
  });

  it('reports stats for the status view', () => {
    const st = store.stats();
    expect(st).toMatchObject({ count: 200, first_seq: 1, head: { seq: 200 }, pruned_through: null, last_checkpoint: null });
    expect(st.by_outcome.denied).toBe(25);
    expect(st.db_bytes).toBeGreaterThan(0);
  });
});

describe('the database on disk', () => {
  it('is created owner-only in the data directory, in WAL mode with synchronous=FULL, at the latest schema', async () => {
    using dir = tempDir();
    const dataDir = join(dir.path, 'data');
    const s = await AuditStore.open({ dataDir, secrets: memorySecretStore() });
    await s.append(toolCall(1));
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);
    expect(statSync(join(dataDir, DB_FILE)).mode & 0o777).toBe(0o600);
    await s.close();
    const db = new DatabaseSync(join(dataDir, DB_FILE));
    expect(db.prepare('PRAGMA journal_mode').get()).toEqual({ journal_mode: 'wal' });
    expect(db.prepare('PRAGMA user_version').get()).toEqual({ user_version: MIGRATIONS.length });
    db.close();
  });

  it("commits each record with synchronous=FULL and the deferred index rows with NORMAL, as SQLite reports the setting", async () => {
    // SQLite applies `PRAGMA synchronous = …` when the statement is compiled: a prepared one run again
    // changes nothing, so the level is read from SQLite at the start of each write transaction.
    using dir = tempDir();
    const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore() });
    const levels: string[] = [];
    const tx = StoreDb.prototype.tx;
    StoreDb.prototype.tx = function (this: StoreDb, fn: () => void) {
      levels.push(String((this.db.prepare('PRAGMA synchronous').get() as { synchronous: number }).synchronous));
      tx.call(this, fn);
    };
    try {
      await s.append(toolCall(1));
      s.flushIndex();
      await s.append(toolCall(2));
      s.flushIndex();
      await s.append(toolCall(3));
    } finally {
      StoreDb.prototype.tx = tx;
    }
    // 2 is FULL, 1 NORMAL: record, index, record, index, record
    expect(levels).toEqual(['2', '1', '2', '1', '2']);
    await s.close();
  });

  it('migrates a store created at an older schema version', async () => {
    using dir = tempDir();
    const old = new DatabaseSync(join(dir.path, DB_FILE));
    old.exec(MIGRATIONS[0]!);
    old.exec('PRAGMA user_version = 1');
    old.close();
    const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore() });
    await s.append(toolCall(1));
    expect((await s.verify()).ok).toBe(true);
    await s.close();
    const db = new DatabaseSync(join(dir.path, DB_FILE));
    expect(db.prepare('PRAGMA user_version').get()).toEqual({ user_version: MIGRATIONS.length });
    expect((db.prepare("PRAGMA index_info('facets_outcome')").all() as { name: string }[]).map((c) => c.name)).toEqual([
      'outcome',
      'seq',
      'tool',
      'tier',
      'kind',
      'user_sub',
    ]);
    db.close();
  });

  it('rebuilds the full-text index of a store from schema 5 so a join key is one whole term, and indexes once what was left unindexed', async () => {
    using dir = tempDir();
    const secrets = memorySecretStore();
    const uuid = '3f2a9c1e-7b4d-4e8a-9f10-c2d3e4f5a6b7';
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    s.appendMany(Array.from({ length: 40 }, (_, i) => toolCall(i, i === 17 ? { keys: { ...toolCall(i).keys, obo_jti: `jti-${uuid}`, vault_request_id: uuid } } : {})));
    await s.close();
    // The store as schema 5 left it: the unicode61 index with positions, each record's words cut at
    // every punctuation mark, and the last five records not indexed yet.
    const db = new DatabaseSync(join(dir.path, DB_FILE));
    for (const { name } of db.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'facet_counts' AND sql IS NOT NULL").all() as { name: string }[]) {
      db.exec(`DROP INDEX ${name}`);
    }
    db.exec(`DROP TABLE records_fts; CREATE VIRTUAL TABLE records_fts USING fts5 (text, content = '', contentless_delete = 1)`);
    const insert = db.prepare('INSERT INTO records_fts (rowid, text) VALUES (?, ?)');
    for (const row of db.prepare('SELECT seq, body FROM records WHERE seq <= 35').all() as { seq: number; body: string }[]) {
      const r = JSON.parse(row.body) as AuditRecord;
      insert.run(row.seq, [r.kind, r.outcome, r.tool, r.summary, r.user?.email, ...Object.values(r.keys)].join(' '));
    }
    db.exec("UPDATE meta SET value = '35' WHERE key = 'indexed_through'; PRAGMA user_version = 5");
    db.close();

    const again = await AuditStore.open({ dataDir: dir.path, secrets });
    expect(again.page({ filter: { search: uuid } }).records.map((r) => r.seq)).toEqual([18]);
    expect(again.page({ filter: { search: `JTI-${uuid.toUpperCase()}` } }).records.map((r) => r.seq)).toEqual([18]);
    // A part of a key still finds it; a key is not found by a piece of another one.
    expect(again.count({ search: 'clinic-read' })).toBe(40);
    expect(again.page({ filter: { search: 'jti-38' } }).records.map((r) => r.seq)).toEqual([39]);
    expect(again.count({ search: 'jti' })).toBe(40);
    expect(again.count({ search: 'jti-3' })).toBe(1);
    // A search within filter columns reads their terms, for records indexed by the rebuild and after it.
    expect(again.page({ filter: { search: 'jti', outcome: ['success'], tool: 'delete_patient' }, limit: 500 }).records.map((r) => r.seq)).toEqual([39, 34, 29, 19, 9]);
    // The last five had their facets rows and counts already: indexing them again does not count them twice.
    expect(again.count({ kind: ['tool_call'] })).toBe(40);
    expect(again.page({ filter: { tool: 'delete_patient' } }).total).toBe(8);
    expect((await again.verify()).ok).toBe(true);
    await again.close();
    const after = new DatabaseSync(join(dir.path, DB_FILE));
    expect(after.prepare('PRAGMA user_version').get()).toEqual({ user_version: MIGRATIONS.length });
    expect((after.prepare("SELECT sql FROM sqlite_master WHERE name = 'records_fts'").get() as { sql: string }).sql).toContain('detail = none');
    after.close();
  });

  it('reopens an existing store, keeps its records and continues its chain', async () => {
    using dir = tempDir();
    const secrets = memorySecretStore();
    const a = await AuditStore.open({ dataDir: dir.path, secrets });
    const r1 = await a.append(toolCall(1));
    await a.close();
    const b = await AuditStore.open({ dataDir: dir.path, secrets });
    const r2 = await b.append(toolCall(2));
    expect(r2.prev_hash).toBe(r1.hash);
    expect((await b.verify()).ok).toBe(true);
    await b.close();
  });

  it('refuses to write without the keychain, and refuses appends when opened read-only', async () => {
    using dir = tempDir();
    await expect(AuditStore.open({ dataDir: dir.path })).rejects.toMatchObject({ code: 'CONFIG_MISSING' });
    const w = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore() });
    await w.append(toolCall(1));
    const r = await AuditStore.open({ dataDir: dir.path, readOnly: true });
    await expect(r.append(toolCall(2))).rejects.toMatchObject({ code: 'AUDIT_READ_ONLY' });
    expect(r.get(1)?.seq).toBe(1);
    await r.close();
    await w.close();
  });

  it('never writes a planted token, password or known secret to any file of the store', async () => {
    using dir = tempDir();
    const jwt = 'eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJwbGFudGVkIn0.c2lnbmF0dXJlLXBsYW50ZWQ';
    const vault = ['hvs', 'CAESIPlantedVaultTokenValue0123456789'].join('.'); // made up, assembled at run time
    const dbPassword = 'A1a-planted-db-password-Zz9';
    const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore(), redaction: { hmacArgs: ['mrn'] } });
    const r = await s.append(
      toolCall(1, {
        summary: `called with Authorization: Bearer ${jwt}`,
        args: { sql: `SELECT '${dbPassword}'`, password: 'hunter2hunter2', nested: { list: [vault] }, mrn: 'MRN-100001' },
        error: { code: 'DB_AUTH_FAILED', message: `login as v-role with ${dbPassword} failed` },
        hops: [{ name: 'vault_login', outcome: 'ok', ms: 1, detail: `token ${vault}` }],
      }),
      { knownSecrets: [dbPassword] },
    );
    expect(r.args).toMatchObject({ password: '[redacted]', nested: { list: ['[redacted]'] }, mrn: expect.stringMatching(/^hmac-sha256:[0-9a-f]{64}$/) });
    expect(r.redacted).toEqual(expect.arrayContaining(['/args/password: secret field', '/summary: jwt', '/args/sql: known secret']));
    await s.close();
    for (const f of readdirSync(dir.path)) {
      const bytes = readFileSync(join(dir.path, f)).toString('latin1');
      for (const secret of [jwt, vault, dbPassword, 'hunter2hunter2', 'MRN-100001', 'c2lnbmF0dXJlLXBsYW50ZWQ']) expect(bytes).not.toContain(secret);
    }
  });
});

describe('verifying a large store', () => {
  it('reads one snapshot in batches that let appends through meanwhile', async () => {
    using dir = tempDir();
    const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore() });
    s.appendMany(Array.from({ length: 12_000 }, (_, i) => toolCall(i)));
    let verified = false;
    const pending = s.verify().then((r) => {
      verified = true;
      return r;
    });
    // A verify that held the event loop to the end would have settled by the next turn.
    await new Promise<void>((r) => setImmediate(r));
    expect(verified).toBe(false);
    const appended = await s.append(toolCall(12_000));
    expect(verified).toBe(false);
    const r = await pending;
    expect(r).toMatchObject({ ok: true, checked: 12_000 });
    expect(appended.seq).toBe(12_001);
    expect((await s.verify()).checked).toBe(12_001);
    await s.close();
  });
});

describe('search terms', () => {
  it('finds a join key whole in any case, a word inside a key or name, and narrows by filter columns and users', async () => {
    using dir = tempDir();
    const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore() });
    const uuid = '0b7e4c2a-91d3-4f6e-8a5b-3c2d1e0f9a8b';
    s.appendMany(
      Array.from({ length: 50 }, (_, i) =>
        toolCall(i, i === 21 ? { keys: { ...toolCall(i).keys, upstream_request_id: uuid }, summary: 'Déjà vu → reprise' } : {}),
      ),
    );
    expect(s.page({ filter: { search: uuid.toUpperCase() } }).records.map((r) => r.seq)).toEqual([22]);
    // A piece of a UUID is a part of it; a different UUID sharing that piece is not found by the whole.
    expect(s.page({ filter: { search: '91d3' } }).records.map((r) => r.seq)).toEqual([22]);
    expect(s.count({ search: uuid.replace('3c2d', '3c2e') })).toBe(0);
    expect(s.page({ filter: { search: 'deja reprise' } }).records.map((r) => r.seq)).toEqual([22]);
    expect(s.count({ search: 'clinic.example' })).toBe(50);
    // Filter columns within a search, as the filters alone would pick them.
    for (const filter of [{ outcome: ['denied' as const, 'error' as const] }, { tier: [2 as const] }, { tool: 'query' }, { user: 'User 3' }, { kind: ['sign_in' as const] }]) {
      const alone = s.page({ filter, limit: 500 }).records.map((r) => r.seq);
      expect(s.page({ filter: { ...filter, search: 'clinic' }, limit: 500 }).records.map((r) => r.seq)).toEqual(alone);
      expect(s.count({ ...filter, search: 'clinic' })).toBe(alone.length);
    }
    expect(s.page({ filter: { search: 'clinic', user: 'nobody' } }).records).toEqual([]);
    await s.close();
  });
});

describe('search over a long history', () => {
  it('finds the newest matches of a rare word however far back they are, and pages through common ones', async () => {
    using dir = tempDir();
    const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore() });
    s.appendMany(Array.from({ length: 9000 }, (_, i) => toolCall(i, i === 2 || i === 8990 ? { summary: 'zebracorn sighting' } : {})));
    expect(s.page({ filter: { search: 'zebracorn' } }).records.map((r) => r.seq)).toEqual([8991, 3]);
    expect(s.page({ filter: { search: 'zebracorn' }, before: 8991 }).records.map((r) => r.seq)).toEqual([3]);
    const common = s.page({ filter: { search: 'delete_patient' }, limit: 500, offset: 1000 });
    const expected = Array.from({ length: 9000 }, (_, i) => i)
      .filter((i) => i % 5 === 3)
      .map((i) => i + 1)
      .reverse()
      .slice(1000, 1500);
    expect(common.records.map((r) => r.seq)).toEqual(expected);
    await s.close();
  });
});

describe('filter and full-text indexing after the durable commit', () => {
  it('finds a record by search and by filter immediately after its append resolves', async () => {
    using dir = tempDir();
    const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore() });
    await s.append(toolCall(1, { summary: 'freshly written' }));
    expect(s.page({ filter: { search: 'freshly' } }).records.map((r) => r.seq)).toEqual([1]);
    await s.append(toolCall(2, { tool: 'brand_new_tool' }));
    expect(s.page({ filter: { tool: 'brand_new_tool' } }).records.map((r) => r.seq)).toEqual([2]);
    expect(s.stats().by_outcome).toEqual({ success: 2 });
    await s.close();
  });

  it('writes an append as the record row alone, a few pages, like a bare insert', async () => {
    using dir = tempDir();
    const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore() });
    s.appendMany(Array.from({ length: 3000 }, (_, i) => toolCall(i)));
    const wal = join(dir.path, `${DB_FILE}-wal`);
    const spy = new DatabaseSync(join(dir.path, DB_FILE));
    spy.exec('PRAGMA wal_checkpoint(TRUNCATE)');
    const frames = () => statSync(wal).size / (4096 + 24);
    const before = frames();
    for (let i = 0; i < 40; i++) s.appendSync(toolCall(3000 + i));
    // One page for the row (occasionally a parent), none for the derived tables yet.
    expect((frames() - before) / 40).toBeLessThan(3);
    spy.close();
    await s.close();
  });

  it('re-indexes on open what a crash left unindexed', async () => {
    using dir = tempDir();
    const secrets = memorySecretStore();
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    for (let i = 0; i < 10; i++) await s.append(toolCall(i));
    await s.close();
    // As if the last index transaction (synchronous=NORMAL) had been lost with the machine.
    const db = new DatabaseSync(join(dir.path, DB_FILE));
    db.prepare('DELETE FROM records_fts WHERE rowid > 4').run();
    db.prepare('DELETE FROM facets WHERE seq > 4').run();
    db.prepare("UPDATE meta SET value = '4' WHERE key = 'indexed_through'").run();
    db.close();
    const ro = await AuditStore.open({ dataDir: dir.path, readOnly: true });
    expect(ro.count({ search: 'jti-7' })).toBe(0);
    expect(ro.count({ kind: ['tool_call'] })).toBe(4);
    expect((await ro.verify()).ok).toBe(true);
    await ro.close();
    const again = await AuditStore.open({ dataDir: dir.path, secrets });
    expect(again.page({ filter: { search: 'jti-7' } }).records.map((r) => r.seq)).toEqual([8]);
    expect(again.count({ search: 'claude' })).toBe(10);
    expect(again.count({ kind: ['tool_call'] })).toBe(10);
    await again.close();
  });

  it('answers the unfiltered timeline whole while a refused index write holds the filters back', async () => {
    using dir = tempDir();
    const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore() });
    for (let i = 0; i < 5; i++) await s.append(toolCall(i));
    s.flushIndex();
    // As a full disk refuses it: the records commit, the index transaction behind them does not.
    const disk = new DatabaseSync(join(dir.path, DB_FILE));
    disk.exec("CREATE TRIGGER full_disk BEFORE INSERT ON facets BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END");
    for (let i = 5; i < 12; i++) await s.append(toolCall(i, i === 9 ? { user: { sub: 'late-sub', name: 'Late Comer' } } : {}));
    s.flushIndex();
    const behind = expect.objectContaining({ code: 'AUDIT_FAILED', message: expect.stringContaining('7 record(s) behind') });
    expect(() => s.page({ filter: { outcome: ['denied'] } })).toThrow(behind);

    // The timeline's own request: unfiltered, with its total.
    const page = s.page();
    expect(page.records.map((r) => r.seq)).toEqual(Array.from({ length: 12 }, (_, i) => 12 - i));
    expect(page).toMatchObject({ total: 12, total_capped: false, head: 12 });
    expect(s.page({ before: 10, offset: 2, limit: 3 })).toMatchObject({ total: 9, next_before: 5 });
    expect(s.count()).toBe(12);
    expect(s.stats()).toMatchObject({ count: 12, by_outcome: { success: 8, denied: 2, error: 1, cancelled: 1 } });
    expect(() => s.page({ filter: { search: 'jti-7' } })).toThrow(behind);
    expect(() => s.count({ kind: ['tool_call'] })).toThrow(behind);

    disk.exec('DROP TRIGGER full_disk');
    disk.close();
    // A user first seen in a record the refused write held back is found by the query that writes it.
    expect(s.page({ filter: { user: 'late comer' } }).records.map((r) => r.seq)).toEqual([10]);
    const denied = s.page({ filter: { outcome: ['denied'] } });
    expect(denied.records.map((r) => r.seq)).toEqual([12, 4]);
    expect(denied.total).toBe(2);
    expect(s.page({ filter: { search: 'jti-7' } }).records.map((r) => r.seq)).toEqual([8]);
    expect(s.count({ kind: ['tool_call'] })).toBe(12);
    await s.close();
  });
});

describe('retention', () => {
  it('removes records by count, keeps the boundary hash, and the rest still verifies', async () => {
    using dir = tempDir();
    const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore() });
    for (let i = 0; i < 30; i++) await s.append(toolCall(i));
    const boundary = s.get(20)!;
    const r = await s.prune({ keepLast: 10 });
    expect(r).toEqual({ removed: 20, through: { seq: 20, hash: boundary.hash } });
    expect(s.get(20)).toBeNull();
    expect(s.get(21)!.prev_hash).toBe(boundary.hash);
    const note = s.get(31)!;
    expect(note).toMatchObject({ kind: 'system', outcome: 'info' });
    expect(note.summary).toContain('through 20');
    expect(await s.verify()).toMatchObject({ ok: true, checked: 11 });
    expect(s.stats()).toMatchObject({ count: 11, first_seq: 21, pruned_through: { seq: 20 } });
    expect(s.count()).toBe(11);
    expect(s.page({ filter: { search: 'jti-5' } }).records).toEqual([]);
    await s.close();
  });

  it('removes records by age', async () => {
    using dir = tempDir();
    let t = Date.parse('2026-01-01T00:00:00Z');
    const day = 86_400_000;
    const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore(), now: () => t });
    for (let i = 0; i < 10; i++) {
      await s.append(toolCall(i));
      t += day;
    }
    const r = await s.prune({ maxAgeMs: 3.5 * day });
    // Days 0..6 are older than 3.5 days at day 10.
    expect(r.removed).toBe(7);
    expect(s.stats().first_seq).toBe(8);
    expect((await s.verify()).ok).toBe(true);
    await s.close();
  });

  it('detects a record deleted just after the retention boundary', async () => {
    using dir = tempDir();
    const secrets = memorySecretStore();
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    for (let i = 0; i < 10; i++) await s.append(toolCall(i));
    await s.prune({ keepLast: 5 });
    await s.close();
    const db = new DatabaseSync(join(dir.path, DB_FILE));
    db.prepare('DELETE FROM records WHERE seq = 6').run();
    db.close();
    const again = await AuditStore.open({ dataDir: dir.path, secrets });
    expect((await again.verify()).firstBad).toMatchObject({ seq: 6, kind: 'deleted' });
    await expect(again.prune({ keepLast: 1 })).rejects.toMatchObject({ code: 'AUDIT_TAMPERED' });
    await again.close();
  });
});

describe('the count a page gives', () => {
  it('counts filter columns, a time window or nothing exactly at any size; a search past AUDIT_COUNT_CAP is the cap, flagged', async () => {
    using dir = tempDir();
    let t = Date.parse('2026-01-01T00:00:00Z');
    const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore(), now: () => (t += 1_000) });
    try {
      const n = AUDIT_COUNT_CAP + 2_000;
      for (let i = 0; i < n; i += 2_000) s.appendMany(Array.from({ length: Math.min(2_000, n - i) }, (_, j) => toolCall(i + j, { outcome: 'success', tool: 'query' })));
      await s.append(toolCall(n, { outcome: 'denied', tool: 'query' }));

      // Filter columns alone are counted exactly from their per-combination counts, however many match.
      const many = s.page({ filter: { outcome: ['success'] }, limit: 10 });
      expect(many).toMatchObject({ total: n, total_capped: false });
      expect(many.records.map((r) => r.seq)).toEqual(Array.from({ length: 10 }, (_, i) => n - i));
      // A search, or filter columns within a time window, matching more than the cap: the cap, flagged.
      expect(s.page({ filter: { search: 'query' }, limit: 1 })).toMatchObject({ total: AUDIT_COUNT_CAP, total_capped: true });
      const since = new Date(Date.parse('2026-01-01T00:00:00Z') + 1_000).toISOString();
      expect(s.page({ filter: { outcome: ['success'], from: since }, limit: 1 })).toMatchObject({ total: AUDIT_COUNT_CAP, total_capped: true });

      // Under the cap: exact.
      expect(s.page({ filter: { outcome: ['denied'] } })).toMatchObject({ total: 1, total_capped: false });
      expect(s.page({ filter: { outcome: ['success'] }, before: 101 })).toMatchObject({ total: 100, total_capped: false });

      // No filter, a cursor, a time window: seq is contiguous, so these are exact at any size.
      expect(s.page({ limit: 1 })).toMatchObject({ total: n + 1, total_capped: false });
      expect(s.page({ limit: 1, before: n - 5 })).toMatchObject({ total: n - 6, total_capped: false });
      const from = new Date(Date.parse('2026-01-01T00:00:00Z') + 501_000).toISOString();
      const to = new Date(Date.parse('2026-01-01T00:00:00Z') + 11_500_000).toISOString();
      expect(s.page({ filter: { from, to }, limit: 1 })).toMatchObject({ total: s.count({ from, to }), total_capped: false });
      expect(s.count({ from, to })).toBeGreaterThan(AUDIT_COUNT_CAP);
    } finally {
      await s.close();
    }
  });
});

describe('pages of several values and their counts', () => {
  it('reads "denied or error" and "tiers 2 and 3" newest first at any offset, and counts them exactly as records come and go', async () => {
    using dir = tempDir();
    const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore() });
    try {
      s.appendMany(Array.from({ length: 3_000 }, (_, i) => toolCall(i)));
      const all = [...s.iterate({})].reverse();
      const expectPage = (filter: Parameters<AuditStore['page']>[0] extends infer Q ? (Q extends { filter?: infer F } ? F : never) : never, offset: number, before?: number) => {
        const want = all.filter(
          (r) =>
            (before === undefined || r.seq < before) &&
            (!filter.outcome || filter.outcome.includes(r.outcome)) &&
            (!filter.tier || filter.tier.includes(r.tier!)) &&
            (!filter.tool || filter.tool === r.tool),
        );
        const p = s.page({ filter, offset, limit: 50, ...(before ? { before } : {}) });
        expect(p.records.map((r) => r.seq)).toEqual(want.slice(offset, offset + 50).map((r) => r.seq));
        expect(p).toMatchObject({ total: want.length, total_capped: false });
      };
      for (const offset of [0, 7, 400]) {
        expectPage({ outcome: ['denied', 'error'] }, offset);
        expectPage({ tier: [2, 3], outcome: ['success', 'denied'] }, offset);
        expectPage({ tier: [2, 3], tool: 'delete_patient' }, offset, 2_000);
      }
      // Counts follow appends, and what a page pinned at an older head says is unchanged by them.
      const pinned = s.head()!.seq + 1;
      await s.append(toolCall(3_000, { outcome: 'denied' }));
      expectPage({ outcome: ['denied', 'error'] }, 0, pinned);
      all.unshift(s.get(3_001)!);
      expectPage({ outcome: ['denied', 'error'] }, 0);
      // and retention, which removes records, recounts.
      await s.prune({ keepLast: 1_000 });
      const kept = [...s.iterate({})].reverse();
      all.length = 0;
      all.push(...kept);
      expectPage({ outcome: ['denied', 'error'] }, 0);
      expectPage({ tier: [1] }, 0);
    } finally {
      await s.close();
    }
  });
});
