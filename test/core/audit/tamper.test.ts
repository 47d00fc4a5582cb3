import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson } from '../../../common/canonical-json.ts';
import { AuditStore, DB_FILE, sha256 } from '../../../main/core/audit/store.ts';
import { memorySecretStore, tempDir, toolCall } from './fixtures.ts';

/** The attacker: someone who can write the database file but not read the keychain. */
function withDb<T>(dir: string, fn: (db: DatabaseSync) => T): T {
  const db = new DatabaseSync(join(dir, DB_FILE));
  try {
    return fn(db);
  } finally {
    db.close();
  }
}

/** Rewrites records from `from` on so that every hash and link is consistent again. */
function rehashFrom(db: DatabaseSync, from: number, edit: (body: Record<string, unknown>) => void): void {
  const prev = db.prepare('SELECT hash FROM records WHERE seq = ?').get(from - 1) as { hash: string } | undefined;
  let prevHash = prev?.hash ?? '0'.repeat(64);
  const rows = db.prepare('SELECT seq, body FROM records WHERE seq >= ? ORDER BY seq').all(from) as { seq: number; body: string }[];
  for (const row of rows) {
    const body = JSON.parse(row.body) as Record<string, unknown>;
    if (row.seq === from) edit(body);
    body.prev_hash = prevHash;
    const text = canonicalJson(body);
    prevHash = sha256(text);
    db.prepare('UPDATE records SET body = ?, hash = ?, outcome = ? WHERE seq = ?').run(text, prevHash, body.outcome as string, row.seq);
    db.prepare('UPDATE facets SET outcome = ? WHERE seq = ?').run(body.outcome as string, row.seq);
  }
}

async function filledStore(n: number, opts: { anchorUrl?: string } = {}) {
  const dir = tempDir();
  const secrets = memorySecretStore();
  const store = await AuditStore.open({ dataDir: dir.path, secrets, ...opts });
  for (let i = 0; i < n; i++) await store.append(toolCall(i));
  return { dir, secrets, store };
}

describe('tamper evidence', () => {
  it('verifies an untouched chain and reports its head', async () => {
    const { dir, store } = await filledStore(10);
    using _ = dir;
    const r = await store.verify();
    expect(r).toMatchObject({ ok: true, checked: 10, firstBad: null, head: { seq: 10, hash: store.get(10)!.hash } });
    await store.close();
  });

  it('names the record whose content was edited', async () => {
    const { dir, secrets, store } = await filledStore(10);
    using _ = dir;
    await store.close();
    withDb(dir.path, (db) =>
      db.prepare("UPDATE records SET body = replace(body, '\"outcome\":\"denied\"', '\"outcome\":\"success\"') WHERE seq = 4").run(),
    );
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    const r = await s.verify();
    expect(r.ok).toBe(false);
    expect(r.firstBad).toMatchObject({ seq: 4, kind: 'edited' });
    expect(r.checked).toBe(3);
    await s.close();
  });

  it('names the record whose indexed column was edited while its hashed body was left alone', async () => {
    const { dir, secrets, store } = await filledStore(10);
    using _ = dir;
    await store.close();
    withDb(dir.path, (db) => db.prepare("UPDATE records SET outcome = 'success' WHERE seq = 6").run());
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    expect((await s.verify()).firstBad).toMatchObject({ seq: 6, kind: 'edited' });
    await s.close();
  });

  it('names the record whose entry in the timeline filters was edited to hide it', async () => {
    const { dir, secrets, store } = await filledStore(10);
    using _ = dir;
    await store.close();
    withDb(dir.path, (db) => db.prepare("UPDATE facets SET outcome = 'success' WHERE seq = 4").run());
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    expect((await s.verify()).firstBad).toMatchObject({ seq: 4, kind: 'edited' });
    await s.close();
  });

  it('names the record whose entry in the timeline filters was deleted', async () => {
    const { dir, secrets, store } = await filledStore(10);
    using _ = dir;
    await store.close();
    withDb(dir.path, (db) => db.prepare('DELETE FROM facets WHERE seq = 9').run());
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    expect((await s.verify()).firstBad).toMatchObject({ seq: 9, kind: 'edited' });
    await s.close();
  });

  it('names the edited record even when its own hash was recomputed to match', async () => {
    const { dir, secrets, store } = await filledStore(10);
    using _ = dir;
    await store.close();
    withDb(dir.path, (db) => {
      const row = db.prepare('SELECT body FROM records WHERE seq = 5').get() as { body: string };
      const body = JSON.parse(row.body) as Record<string, unknown>;
      body.summary = 'nothing happened';
      const text = canonicalJson(body);
      db.prepare('UPDATE records SET body = ?, hash = ? WHERE seq = 5').run(text, sha256(text));
    });
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    expect((await s.verify()).firstBad).toMatchObject({ seq: 5, kind: 'edited' });
    await s.close();
  });

  it('names the first deleted record', async () => {
    const { dir, secrets, store } = await filledStore(10);
    using _ = dir;
    await store.close();
    withDb(dir.path, (db) => db.prepare('DELETE FROM records WHERE seq IN (7, 8)').run());
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    expect((await s.verify()).firstBad).toMatchObject({ seq: 7, kind: 'deleted' });
    await s.close();
  });

  it('names a deleted record whose successors were renumbered to close the gap', async () => {
    const { dir, secrets, store } = await filledStore(10);
    using _ = dir;
    await store.close();
    withDb(dir.path, (db) => {
      db.prepare('DELETE FROM records WHERE seq = 3').run();
      for (let s = 4; s <= 10; s++) db.prepare('UPDATE records SET seq = ? WHERE seq = ?').run(s - 1, s);
    });
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    expect((await s.verify()).firstBad).toMatchObject({ seq: 3, kind: 'deleted' });
    await s.close();
  });

  it('names the first record of a reordered pair', async () => {
    const { dir, secrets, store } = await filledStore(10);
    using _ = dir;
    await store.close();
    withDb(dir.path, (db) => {
      db.prepare('UPDATE records SET seq = -1 WHERE seq = 5').run();
      db.prepare('UPDATE records SET seq = 5 WHERE seq = 6').run();
      db.prepare('UPDATE records SET seq = 6 WHERE seq = -1').run();
    });
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    expect((await s.verify()).firstBad).toMatchObject({ seq: 5, kind: 'reordered' });
    await s.close();
  });

  it('does not detect a truncated tail without an anchor', async () => {
    const { dir, secrets, store } = await filledStore(10);
    using _ = dir;
    await store.close();
    withDb(dir.path, (db) => db.prepare('DELETE FROM records WHERE seq > 7').run());
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    expect(await s.verify()).toMatchObject({ ok: true, checked: 7, anchored: false });
    await s.close();
  });

  it('catches a signed checkpoint kept locally when the tail is cut after it', async () => {
    const { dir, secrets, store } = await filledStore(10);
    using _ = dir;
    await store.checkpoint();
    await store.close();
    withDb(dir.path, (db) => db.prepare('DELETE FROM records WHERE seq > 7').run());
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    expect((await s.verify()).firstBad).toMatchObject({ seq: 8, kind: 'truncated' });
    await s.close();
  });

  it('rejects a local checkpoint forged without the install key', async () => {
    const { dir, secrets, store } = await filledStore(5);
    using _ = dir;
    const real = (await store.checkpoint()).checkpoint.jws;
    await store.close();
    const [h, p] = real.split('.');
    const forgedPayload = Buffer.from(JSON.stringify({ seq: 5, hash: 'f'.repeat(64), at_ms: 1 })).toString('base64url');
    withDb(dir.path, (db) => db.prepare('UPDATE checkpoints SET jws = ?').run(`${h}.${forgedPayload}.${real.split('.')[2]}`));
    expect(p).not.toBe(forgedPayload);
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    expect((await s.verify()).firstBad).toMatchObject({ kind: 'checkpoint_invalid' });
    await s.close();
  });
});

describe('anchors kept off the machine', () => {
  let server: Server;
  let url: string;
  const received: { contentType: string | undefined; body: string }[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        received.push({ contentType: req.headers['content-type'], body });
        res.writeHead(201).end();
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/anchor`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('POSTs each checkpoint as application/jose and records that it was anchored', async () => {
    const { dir, store } = await filledStore(3, { anchorUrl: url });
    using _ = dir;
    const before = received.length;
    const r = await store.checkpoint();
    expect(r.anchored).toBe(true);
    expect(received.slice(before)).toEqual([{ contentType: 'application/jose', body: r.checkpoint.jws }]);
    expect(store.stats().last_checkpoint).toMatchObject({ seq: 3, anchored: true });
    await store.close();
  });

  it('checkpoints and anchors every N records on its own', async () => {
    using dir = tempDir();
    const secrets = memorySecretStore();
    const store = await AuditStore.open({ dataDir: dir.path, secrets, anchorUrl: url, checkpointEvery: 5 });
    const before = received.length;
    for (let i = 0; i < 12; i++) await store.append(toolCall(i));
    await store.close();
    const anchors = received.slice(before).map((r) => r.body);
    const seqs = anchors.map((jws) => (JSON.parse(Buffer.from(jws.split('.')[1]!, 'base64url').toString()) as { seq: number }).seq);
    expect(seqs.sort((a, b) => a - b)).toEqual([5, 10]);
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    expect(await s.verify({ anchors })).toMatchObject({ ok: true, anchors_checked: 2, checkpoints_checked: 2 });
    await s.close();
  });

  it('reports an anchor receiver that is down without failing the checkpoint', async () => {
    const { dir, store } = await filledStore(2, { anchorUrl: 'http://127.0.0.1:9/unreachable' });
    using _ = dir;
    const r = await store.checkpoint();
    expect(r).toMatchObject({ anchored: false, error: { code: 'AUDIT_ANCHOR_FAILED' } });
    expect(store.checkpoints()).toHaveLength(1);
    await store.close();
  });

  it('detects a fully re-hashed chain only with an anchor', async () => {
    const { dir, secrets, store } = await filledStore(10, { anchorUrl: url });
    using _ = dir;
    const before = received.length;
    await store.checkpoint();
    const anchors = received.slice(before).map((r) => r.body);
    await store.close();
    // Rewrite record 4 and re-hash everything after it, and remove the local checkpoints too.
    withDb(dir.path, (db) => {
      rehashFrom(db, 4, (b) => (b.outcome = 'success'));
      db.prepare('DELETE FROM checkpoints').run();
    });
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    expect(await s.verify()).toMatchObject({ ok: true, checked: 10 });
    const withAnchor = await s.verify({ anchors });
    expect(withAnchor).toMatchObject({ ok: false, firstBad: { seq: 10, kind: 'rewritten' } });
    await s.close();
  });

  it('detects a truncated tail only with an anchor', async () => {
    const { dir, secrets, store } = await filledStore(10, { anchorUrl: url });
    using _ = dir;
    const before = received.length;
    await store.checkpoint();
    const anchors = received.slice(before).map((r) => r.body);
    await store.close();
    withDb(dir.path, (db) => {
      db.prepare('DELETE FROM records WHERE seq > 6').run();
      db.prepare('DELETE FROM checkpoints').run();
    });
    const s = await AuditStore.open({ dataDir: dir.path, secrets });
    expect(await s.verify()).toMatchObject({ ok: true, checked: 6 });
    expect(await s.verify({ anchors })).toMatchObject({ ok: false, firstBad: { seq: 7, kind: 'truncated' } });
    await s.close();
  });

  it('verifies anchors against the public key their holder was given, not one planted in the database', async () => {
    const { dir, secrets, store } = await filledStore(4, { anchorUrl: url });
    using _ = dir;
    const publicKey = store.publicKeyJwk();
    const before = received.length;
    await store.checkpoint();
    const anchors = received.slice(before).map((r) => r.body);
    await store.close();
    // A different install's key and checkpoint: signed correctly, but not by this install.
    const other = tempDir();
    using __ = other;
    const foreign = await AuditStore.open({ dataDir: other.path, secrets: memorySecretStore() });
    for (let i = 0; i < 4; i++) await foreign.append(toolCall(i));
    const forged = (await foreign.checkpoint()).checkpoint.jws;
    await foreign.close();
    const s = await AuditStore.open({ dataDir: dir.path, readOnly: true });
    expect(await s.verify({ anchors, publicKey })).toMatchObject({ ok: true, anchored: true, anchors_checked: 1 });
    expect(await s.verify({ anchors: [forged], publicKey })).toMatchObject({ ok: false, firstBad: { kind: 'checkpoint_invalid' } });
    await s.close();
    expect(secrets.entries.size).toBe(2);
  });
});
