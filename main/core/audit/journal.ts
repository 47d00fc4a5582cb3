/**
 * The calls in flight, kept durably apart from the hash chain: the broker notes a call when it starts
 * and as it learns its join keys (OBO jti, Vault accessor, lease, database role), and forgets it once
 * the call's audit record is written. If the core dies mid-call, the next start finds the note and
 * closes the call on the timeline as `aborted`, with what was known; its per-call credential is gone by
 * then or expires at its Vault TTL (60 s). Holds join keys, and one secret only sealed: the call's
 * Vault token, encrypted (AES-256-GCM) under a key derived from the install's keychain-held key, so the
 * next start can revoke a credential the dead run minted. Without a sealing key it holds no secret.
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import type { JoinKeys } from '../../../common/audit-record.ts';
import type { CallJournal, JournalEntry } from '../ports.ts';
import { privateDatabase } from '../data-dir.ts';

export const JOURNAL_FILE = 'calls-in-flight.db';

export class SqliteCallJournal implements CallJournal {
  readonly #db: DatabaseSync;
  readonly #insert: StatementSync;
  readonly #update: StatementSync;
  readonly #delete: StatementSync;
  readonly #select: StatementSync;
  readonly #sealKey: Buffer | undefined;
  /** The entries this process wrote and has not ended: a note merges here instead of reading its row back. */
  readonly #open = new Map<string, JournalEntry>();

  /** `sealKey`: key material from the keychain (the install's HMAC key); a journal without it holds no token. */
  constructor(dataDir: string, options: { sealKey?: Uint8Array } = {}) {
    this.#sealKey = options.sealKey ? Buffer.from(hkdfSync('sha256', options.sealKey, Buffer.alloc(0), 'countersign call-journal seal v1', 32)) : undefined;
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    const file = path.join(dataDir, JOURNAL_FILE);
    privateDatabase(file);
    this.#db = new DatabaseSync(file);
    // WAL with NORMAL survives the process being killed, which is the case this exists for.
    this.#db.exec('PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE IF NOT EXISTS calls (id TEXT PRIMARY KEY, body TEXT NOT NULL)');
    this.#insert = this.#db.prepare('INSERT OR REPLACE INTO calls (id, body) VALUES (?, ?)');
    this.#update = this.#db.prepare('UPDATE calls SET body = ? WHERE id = ?');
    this.#delete = this.#db.prepare('DELETE FROM calls WHERE id = ?');
    this.#select = this.#db.prepare('SELECT id, body FROM calls ORDER BY rowid');
  }

  begin(id: string, entry: JournalEntry): void {
    this.#insert.run(id, JSON.stringify(entry));
    this.#open.set(id, entry);
  }

  note(id: string, update: { keys?: JoinKeys; tier?: JournalEntry['tier']; target?: string }): void {
    const entry = this.#open.get(id);
    if (!entry) return;
    const next = { ...entry, ...update, keys: { ...entry.keys, ...update.keys } };
    this.#update.run(JSON.stringify(next), id);
    this.#open.set(id, next);
  }

  /** Seals the call's Vault token into its entry, with the join keys learnt with it (`keys`), in one write. */
  holdCredential(id: string, vaultToken: string, keys?: JoinKeys): void {
    const entry = this.#open.get(id);
    if (!entry || (!this.#sealKey && !keys)) return;
    const next: JournalEntry = { ...entry, ...(keys ? { keys: { ...entry.keys, ...keys } } : {}) };
    if (this.#sealKey) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', this.#sealKey, iv);
      cipher.setAAD(Buffer.from(id));
      next.sealedVaultToken = Buffer.concat([iv, cipher.update(vaultToken, 'utf8'), cipher.final(), cipher.getAuthTag()]).toString('base64');
    }
    this.#update.run(JSON.stringify(next), id);
    this.#open.set(id, next);
  }

  /** The Vault token `holdCredential` sealed for this call; undefined when none or when it cannot be opened (another key). */
  unsealVaultToken(id: string, entry: JournalEntry): string | undefined {
    if (!this.#sealKey || !entry.sealedVaultToken) return undefined;
    try {
      const raw = Buffer.from(entry.sealedVaultToken, 'base64');
      const decipher = createDecipheriv('aes-256-gcm', this.#sealKey, raw.subarray(0, 12));
      decipher.setAAD(Buffer.from(id));
      decipher.setAuthTag(raw.subarray(raw.length - 16));
      return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]).toString('utf8');
    } catch {
      return undefined;
    }
  }

  end(id: string): void {
    this.#delete.run(id);
    this.#open.delete(id);
  }

  /** Calls noted by a core that is no longer running (read at start, before any new call). */
  orphans(): Array<{ id: string; entry: JournalEntry }> {
    return (this.#select.all() as Array<{ id: string; body: string }>).map((r) => ({ id: r.id, entry: JSON.parse(r.body) as JournalEntry }));
  }

  close(): void {
    this.#db.close();
  }
}
