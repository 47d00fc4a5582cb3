import { Readable } from 'node:stream';
import type { AuditFilter } from '../../../common/contract.ts';
import { canonicalJson } from '../../../common/canonical-json.ts';
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
