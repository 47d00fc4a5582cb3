/**
 * Audit store benchmark. Ratios the issue asks for, measured in the same run:
 * - the newest filtered page at 1,000,000 records against the same query at 10,000 (cost stays flat);
 * - durable appends against a bare node:sqlite insert loop with the same durability settings
 *   (WAL, synchronous=FULL, one transaction per record), timed in pairs (see pairedAppendsPerSecond).
 *
 * The 1M store is filled with `appendMany` in transactions of 10,000 records: the same validation,
 * redaction, canonical JSON and SHA-256 chaining as `append`, only with one commit per batch instead of
 * one per record, so the chain it leaves verifies like any other.
 *
 * Run alone: `node bench/audit.bench.ts` (prints JSON).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import type { AuditRecordInput } from '../common/audit-record.ts';
import type { AuditPageRequest } from '../common/contract.ts';
import { canonicalJson } from '../common/canonical-json.ts';
import { AuditStore } from '../main/core/audit/store.ts';
import type { SecretStore } from '../main/core/ports.ts';
import { goal, plain, ratioOf, type Figures } from './figures.ts';

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
}

export interface AuditBenchResult {
  audit_page_10k: Percentiles;
  audit_page_1m: Percentiles;
  /** One caller awaiting each append: one transaction and one sync per record, like the raw loop. */
  audit_append_per_s: number;
  sqlite_raw_append_per_s: number;
  /** Eight callers appending at once (calls finishing together): group commit shares the sync. */
  audit_append_concurrent8_per_s: number;
  /** Other filtered pages at both sizes, for the record. */
  page_variants: Record<string, { at_10k: Percentiles; at_1m: Percentiles }>;
  fill_1m_s: number;
  verify_1m_s: number;
  db_bytes_1m: number;
}

const TOOLS = ['query', 'update_appointment', 'list_tables', 'delete_patient', 'search_docs', 'read_chart', 'send_message'];
const OUTCOMES = ['success', 'success', 'success', 'denied', 'success', 'error', 'success', 'success', 'cancelled', 'success'] as const;

function record(i: number): AuditRecordInput {
  const tool = TOOLS[i % TOOLS.length]!;
  return {
    kind: 'tool_call',
    outcome: OUTCOMES[i % OUTCOMES.length]!,
    user: { sub: `user-${i % 13}`, name: `User ${i % 13}` },
    client: { name: 'claude-ai', version: '0.1', pid: 4242 },
    tool,
    tier: ((i % 4) + 1) as 1 | 2 | 3 | 4,
    target: 'postgres://lab/clinic',
    authorization_details: [{ type: 'postgres', actions: ['select'], locations: ['clinic.appointments'] }],
    args: { sql: `SELECT * FROM appointments WHERE id = ${i}` },
    hops: [
      { name: 'classify', outcome: 'ok', ms: 0.4 },
      { name: 'exchange', outcome: 'ok', ms: 5.1 },
      { name: 'vault_login', outcome: 'ok', ms: 2.3 },
      { name: 'execute', outcome: 'ok', ms: 3.9 },
      { name: 'revoke', outcome: 'ok', ms: 1.2 },
    ],
    keys: { mcp_request_id: i, obo_jti: `jti-${i}`, vault_request_id: `vreq-${i}`, lease_id: `database/creds/clinic-read/L${i}`, db_role: `v-jwt-clinic-${i}` },
    summary: `${tool} #${i}`,
    duration_ms: 13,
  };
}

function memorySecrets(): SecretStore {
  const m = new Map<string, string>();
  return { kind: 'memory', get: async (k) => m.get(k) ?? null, set: async (k, v) => void m.set(k, v), delete: async (k) => void m.delete(k) };
}

function percentiles(samples: number[]): Percentiles {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => round(s[Math.min(s.length - 1, Math.floor(q * s.length))]!);
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

const round = (n: number) => Math.round(n * 1000) / 1000;

/** The headline query: the newest page of denied calls of one tool, as the timeline asks for it. */
const HEADLINE: AuditPageRequest = { filter: { outcome: ['denied'], tool: 'delete_patient' }, limit: 100 };
const VARIANTS: Record<string, AuditPageRequest> = {
  unfiltered: { limit: 100 },
  outcome_error: { filter: { outcome: ['error'] }, limit: 100 },
  user_and_tier: { filter: { user: 'user-5', tier: [3] }, limit: 100 },
  search_word: { filter: { search: 'update_appointment' }, limit: 100 },
  search_rare: { filter: { search: 'jti-4242' }, limit: 100 },
  deep_offset: { offset: 5000, limit: 100 },
  search_and_outcome: { filter: { search: 'clinic', outcome: ['denied'] }, limit: 100 },
};

function timePage(store: AuditStore, q: AuditPageRequest, runs: number): Percentiles {
  for (let i = 0; i < 5; i++) store.page(q, { withTotal: false });
  const samples: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t = performance.now();
    const p = store.page(q, { withTotal: false });
    samples.push(performance.now() - t);
    if (p.records.length === 0) throw new Error('benchmark query matched nothing');
  }
  return percentiles(samples);
}

async function fill(store: AuditStore, n: number): Promise<void> {
  const batch = 10_000;
  for (let start = 0; start < n; start += batch) {
    const rows: AuditRecordInput[] = [];
    for (let i = start; i < Math.min(n, start + batch); i++) rows.push(record(i));
    store.appendMany(rows);
  }
}

/**
 * Durable appends against a bare node:sqlite insert loop, paired: each iteration times one bare insert
 * (autocommit, WAL, synchronous=FULL, a body of the same size) and then one awaited `append`, so both
 * see the same disk at the same moment. On a shared machine whose fsync latency swings by 10x from one
 * second to the next, timing the two loops one after the other measures the neighbours, not the code.
 */
async function pairedAppendsPerSecond(dir: string, n: number): Promise<{ audit: number; raw: number }> {
  const db = new DatabaseSync(join(dir, 'raw.db'));
  db.exec('PRAGMA journal_mode = WAL');
  db.exec('PRAGMA synchronous = FULL');
  db.exec('CREATE TABLE r (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)');
  const insert = db.prepare('INSERT INTO r (body) VALUES (?)');
  const store = await AuditStore.open({ dataDir: join(dir, 'audit'), secrets: memorySecrets() });
  const inputs = Array.from({ length: n }, (_, i) => record(i));
  const bodies = inputs.map((r) => canonicalJson(r));
  let rawMs = 0;
  let auditMs = 0;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    insert.run(bodies[i]!);
    const t1 = performance.now();
    await store.append(inputs[i]!);
    const t2 = performance.now();
    rawMs += t1 - t0;
    auditMs += t2 - t1;
  }
  db.close();
  await store.close();
  return { audit: (n / auditMs) * 1000, raw: (n / rawMs) * 1000 };
}

async function auditAppendsPerSecond(dir: string, n: number, concurrency = 1): Promise<number> {
  const store = await AuditStore.open({ dataDir: join(dir, `append-${concurrency}`), secrets: memorySecrets() });
  const inputs = Array.from({ length: n }, (_, i) => record(i));
  let next = 0;
  const worker = async () => {
    while (next < inputs.length) await store.append(inputs[next++]!);
  };
  const t = performance.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const s = (performance.now() - t) / 1000;
  await store.close();
  return n / s;
}

export async function benchAudit(): Promise<AuditBenchResult> {
  const root = mkdtempSync(join(tmpdir(), 'cs-audit-bench-'));
  try {
    const paired = await pairedAppendsPerSecond(mkdtempSync(join(root, 'paired-')), 2000);
    const concurrent = await auditAppendsPerSecond(mkdtempSync(join(root, 'concurrent-')), 2000, 8);

    const small = await AuditStore.open({ dataDir: join(root, 'small'), secrets: memorySecrets() });
    await fill(small, 10_000);
    const big = await AuditStore.open({ dataDir: join(root, 'big'), secrets: memorySecrets() });
    const t0 = performance.now();
    await fill(big, 1_000_000);
    const fillS = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    const v = await big.verify();
    const verifyS = (performance.now() - t1) / 1000;
    if (!v.ok || v.checked !== 1_000_000) throw new Error('the bulk-filled chain does not verify');

    const runs = 300;
    const result: AuditBenchResult = {
      audit_page_10k: timePage(small, HEADLINE, runs),
      audit_page_1m: timePage(big, HEADLINE, runs),
      audit_append_per_s: Math.round(paired.audit),
      sqlite_raw_append_per_s: Math.round(paired.raw),
      audit_append_concurrent8_per_s: Math.round(concurrent),
      page_variants: {},
      fill_1m_s: round(fillS),
      verify_1m_s: round(verifyS),
      db_bytes_1m: big.stats().db_bytes,
    };
    for (const [name, q] of Object.entries(VARIANTS)) {
      result.page_variants[name] = { at_10k: timePage(small, q, 100), at_1m: timePage(big, q, 100) };
    }
    await small.close();
    await big.close();
    return result;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** The audit store's figures for bench/run.ts. */
export async function bench(): Promise<Figures> {
  const r = await benchAudit();
  const f: Figures = {
    audit_page_10k: plain(r.audit_page_10k, 'ms', 'the headline filtered page with 10,000 records (baseline)'),
    audit_page_1m: plain(r.audit_page_1m, 'ms', 'the same page with 1,000,000 records'),
    audit_page_1m_vs_10k: goal(ratioOf(r.audit_page_1m.p50, r.audit_page_10k.p50), 'ratio', '<=', 2, 'the headline page at 1,000,000 records over 10,000 (p50)'),
    audit_append_per_s: plain(r.audit_append_per_s, 'per_s', 'durable appends per second, one caller'),
    sqlite_raw_append_per_s: plain(r.sqlite_raw_append_per_s, 'per_s', 'a bare node:sqlite insert loop with the same durability, paired with the appends (baseline)'),
    audit_append_vs_sqlite_raw: goal(ratioOf(r.audit_append_per_s, r.sqlite_raw_append_per_s), 'ratio', '>=', 0.5, 'durable appends per second over the bare insert loop'),
  };
  return f;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const r = await benchAudit();
  process.stdout.write(
    JSON.stringify(
      {
        ...r,
        ratio_page_1m_over_10k_p50: round(r.audit_page_1m.p50 / r.audit_page_10k.p50),
        ratio_append_over_raw: round(r.audit_append_per_s / r.sqlite_raw_append_per_s),
      },
      null,
      2,
    ) + '\n',
  );
}
