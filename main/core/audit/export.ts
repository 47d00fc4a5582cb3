import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { AuditFilter } from '../../../common/contract.ts';
import { canonicalJson } from '../../../common/canonical-json.ts';
import { AppError } from '../../../common/errors.ts';
import type { AuditStore, StoredAuditRecord } from './store.ts';

/**
 * Export of the timeline as JSON Lines or CSV, streamed from one read snapshot, oldest first. Each JSON
 * line is the stored record exactly (canonical JSON with its hash), so an export can be re-verified
 * off the machine; the CSV has the columns a spreadsheet needs plus the same JSON in its last column.
 */
export type ExportFormat = 'jsonl' | 'csv';

export const EXPORT_MEDIA_TYPES: Record<ExportFormat, string> = {
  jsonl: 'application/jsonl',
  csv: 'text/csv; charset=utf-8',
};

export function exportFilename(format: ExportFormat, at = new Date()): string {
  return `countersign-audit-${at.toISOString().replace(/[:.]/g, '-')}.${format}`;
}

export const CSV_COLUMNS = [
  'seq',
  'at',
  'kind',
  'outcome',
  'user_sub',
  'user_name',
  'user_email',
  'client_name',
  'tool',
  'tier',
  'target',
  'duration_ms',
  'summary',
  'error_code',
  'error_message',
  'mcp_request_id',
  'obo_jti',
  'vault_request_id',
  'vault_accessor',
  'lease_id',
  'db_role',
  'upstream_request_id',
  'prev_hash',
  'hash',
  'record_json',
] as const;

/** Lines of the export, each ending in `\n`. */
export function* exportLines(store: AuditStore, format: ExportFormat, filter: AuditFilter = {}): Generator<string> {
  if (format === 'csv') yield CSV_COLUMNS.join(',') + '\r\n';
  for (const record of store.iterate(filter)) {
    yield format === 'jsonl' ? canonicalJson(record) + '\n' : csvRow(record) + '\r\n';
  }
}

/** A byte stream of the export, for a file, an HTTP response or stdout (honours backpressure). */
export function exportStream(store: AuditStore, format: ExportFormat, filter: AuditFilter = {}): Readable {
  return Readable.from(exportLines(store, format, filter), { objectMode: false, encoding: 'utf8' });
}

/**
 * Streams the export into `path`: a temporary file beside it (owner-only), flushed to disk, then
 * renamed over `path`, so the file is either the whole export or, on any failure, untouched (the
 * temporary file is removed). Never holds more than a stream's buffer of the history in memory.
 */
export async function writeExportFile(
  store: AuditStore,
  format: ExportFormat,
  filter: AuditFilter,
  path: string,
  signal?: AbortSignal,
): Promise<{ records: number; bytes: number }> {
  const temp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.part`);
  let records = format === 'csv' ? -1 : 0; // the CSV's first line is its header
  let bytes = 0;
  function* counted(): Generator<string> {
    for (const line of exportLines(store, format, filter)) {
      records += 1;
      bytes += Buffer.byteLength(line);
      yield line;
    }
  }
  try {
    const source = Readable.from(counted(), { objectMode: false, encoding: 'utf8' });
    await pipeline(source, createWriteStream(temp, { mode: 0o600, flags: 'wx' }), ...(signal ? [{ signal }] : []));
    const handle = await open(temp, 'r+');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, path);
  } catch (error) {
    await rm(temp, { force: true }).catch(() => undefined);
    if (signal?.aborted) throw new AppError('CANCELLED', 'The export was cancelled; no file was written.', { cause: error });
    const code = (error as NodeJS.ErrnoException).code;
    throw new AppError('EXPORT_FAILED', `The export could not be written to ${path}${code ? ` (${code})` : ''}; nothing was saved there.`, { cause: error });
  }
  return { records: Math.max(0, records), bytes };
}

function csvRow(r: StoredAuditRecord): string {
  const k = r.keys ?? {};
  const cells: unknown[] = [
    r.seq,
    r.at,
    r.kind,
    r.outcome,
    r.user?.sub,
    r.user?.name,
    r.user?.email,
    r.client?.name,
    r.tool,
    r.tier,
    r.target,
    r.duration_ms,
    r.summary,
    r.error?.code,
    r.error?.message,
    k.mcp_request_id,
    k.obo_jti,
    k.vault_request_id,
    k.vault_accessor,
    k.lease_id,
    k.db_role,
    k.upstream_request_id,
    r.prev_hash,
    r.hash,
    canonicalJson(r),
  ];
  return cells.map(csvCell).join(',');
}

/**
 * RFC 4180 quoting, plus a guard against formula injection: a text cell a spreadsheet would evaluate
 * (`=`, `+`, `-`, `@`, tab, CR at its start) gets a leading apostrophe, since tool arguments and
 * summaries are text a model chose.
 */
export function csvCell(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'number') return String(value);
  let s = String(value);
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) || s !== s.trim() ? `"${s.replaceAll('"', '""')}"` : s;
}

/** Parses one CSV document (RFC 4180) into rows; used to check exports and by the tests. */
export function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      row.push(cell);
      cell = '';
    } else if (c === '\n' || (c === '\r' && text[i + 1] === '\n')) {
      if (c === '\r') i++;
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else cell += c;
  }
  if (cell !== '' || row.length > 0) {
    row.push(cell);
    rows.push(row);
  }
  return rows;
}
