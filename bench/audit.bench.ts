/**
 * Audit store benchmark, as the app uses the store:
 * - pages: what the `audit.page` handler computes for one page of the timeline (the newest 100 matching
 *   records and the count the list shows, exact or capped at AUDIT_COUNT_CAP), for each headline filter
 *   and two full-text searches, at 10,000 and at 1,000,000 records. The data is skewed as a real
 *   install's is: a few users and tools hold most records, most calls succeed. Goal: each page at 1M
 *   costs at most 2x the same page at 10k;
 * - appends: durable appends (validation, redaction, canonical JSON, hash chain, one commit with
 *   synchronous=FULL) and the deferred index rows each one leaves (filters, full-text), written on the
 *   store's own schedule and, as a detail, one flush per record, against a bare node:sqlite insert
 *   loop with the same durability, timed in pairs (see pairedAppendsPerSecond), in a process of their
 *   own started with the core's Node options (bench/fixtures/appends-child.ts).
 *
 * The 1M store is filled with `appendMany` in transactions of 10,000 records: the same validation,
 * redaction, canonical JSON and SHA-256 chaining as `append`, one commit per batch, so the chain it
 * leaves verifies like any other.
 *
 * Run alone: `BENCH_ONLY=audit node bench/run.ts`. BENCH_AUDIT_STORES=<dir> keeps the 10,000 and the
 * 1,000,000-record stores in <dir> and reuses them in later runs (filling the million takes minutes,
 * up to 48 on a loaded machine: docs/benchmarks.md); a store opened there takes the current schema's migrations first.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { DatabaseSync } from 'node:sqlite';
import type { AuditRecordInput } from '../common/audit-record.ts';
import type { AuditPageRequest } from '../common/contract.ts';
import { canonicalJson } from '../common/canonical-json.ts';
import { AuditStore } from '../main/core/audit/store.ts';
import type { SecretStore } from '../main/core/ports.ts';
import { runApart } from './apart.ts';
import { goal, percentiles, plain, ratioOf, rng, round, type Figures, type Percentiles } from './figures.ts';


/** Picks from weighted choices. */
function weighted<T>(choices: ReadonlyArray<readonly [T, number]>): (r: number) => T {
  const total = choices.reduce((a, [, w]) => a + w, 0);
  return (r) => {
    let x = r * total;
    for (const [v, w] of choices) if ((x -= w) < 0) return v;
    return choices[choices.length - 1]![0];
  };
}

// A few hold most: the first user makes 40% of the calls, the first three 70%, forty others the rest.
const USERS = Array.from({ length: 43 }, (_, i) => ({ sub: `user-${i}`, name: `User ${i}`, email: `user${i}@clinic.example` }));
const user = weighted(USERS.map((u, i) => [u, i === 0 ? 40 : i === 1 ? 20 : i === 2 ? 10 : 30 / 40] as const));
const TOOLS: ReadonlyArray<readonly [string, 1 | 2 | 3 | 4, number]> = [
  ['query', 1, 50],
  ['list_tables', 1, 15],
  ['describe_table', 1, 8],
  ['execute', 2, 10],
  ['read_chart', 3, 4],
  ['search_docs', 1, 4],
  ['send_message', 2, 3],
  ['update_appointment', 2, 3],
  ['create_ticket', 2, 1.5],
  ['delete_patient', 4, 0.5],
  ...Array.from({ length: 10 }, (_, i) => [`upstream_tool_${i}`, 1, 0.1] as const),
];
const tool = weighted(TOOLS.map((t) => [t, t[2]] as const));
const outcome = weighted([
  ['success', 90],
  ['denied', 5],
  ['error', 3],
  ['cancelled', 1],
  ['timeout', 1],
] as const);

/** A UUID (v4 layout) from the generator, as Vault's request ids and the IdP's token ids look. */
function uuid(r: () => number): string {
  const hex = Array.from({ length: 32 }, () => Math.floor(r() * 16).toString(16)).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-4${hex.slice(13, 16)}-a${hex.slice(17, 20)}-${hex.slice(20)}`;
}

/** Records `first` to `first + n - 1` of a store: join keys are unique across the whole store, as the app's are. */
export function records(n: number, seed = 1, first = 0): AuditRecordInput[] {
  const r = rng(seed);
  const out: AuditRecordInput[] = [];
  for (let i = first; i < first + n; i++) {
    const [name, tier] = tool(r());
    // tier 4 is refused before anything runs
    const o = tier === 4 ? 'denied' : outcome(r());
    const u = user(r());
    const table = ['patients', 'appointments', 'prescriptions', 'notes'][Math.floor(r() * 4)]!;
    out.push({
      kind: 'tool_call',
      outcome: o,
      user: u,
      client: { name: 'claude-ai', version: '0.1', pid: 4242 },
      tool: name,
      tier,
      target: 'postgres://lab/clinic',
      authorization_details: [{ type: 'postgres', actions: [tier === 1 ? 'SELECT' : 'UPDATE'], locations: ['postgres://lab/clinic'], tables: [table] }],
      args: { sql: `SELECT id, full_name FROM ${table} WHERE id = ${Math.floor(r() * 100_000)}` },
      hops: [
        { name: 'classify', outcome: 'ok', ms: 0.4 },
        { name: 'exchange', outcome: o === 'denied' ? 'denied' : 'ok', ms: 5.1 },
        { name: 'vault_login', outcome: 'ok', ms: 2.3 },
        { name: 'execute', outcome: o === 'error' ? 'error' : 'ok', ms: 3.9 },
        { name: 'revoke', outcome: 'ok', ms: 1.2 },
      ],
      keys: {
        mcp_request_id: i,
        mcp_session_id: `sess-${Math.floor(i / 50)}`,
        obo_jti: `jti-${i.toString(16).padStart(8, '0')}`,
        vault_request_id: uuid(r),
        lease_id: `database/creds/clinic-read/${uuid(r)}`,
        db_role: `v-jwt-clinic-${i}`,
      },
      ...(o === 'error' ? { error: { code: 'DB_QUERY_FAILED', message: 'relation does not exist' } } : {}),
      summary: `${name} on postgres://lab/clinic → ${o}`,
      duration_ms: 13,
    });
  }
  return out;
}

export function memorySecrets(): SecretStore {
  const m = new Map<string, string>();
  return { kind: 'memory', get: async (k) => m.get(k) ?? null, set: async (k, v) => void m.set(k, v), delete: async (k) => void m.delete(k) };
}

/** The join keys of record 1,234, which both stores hold: the search for a call by its OBO token or its Vault request. */
const KEYS = records(10_000, 1, 0)[1234]!.keys!;

/**
 * The timeline's headline filters, a common word, two join keys and a word within an outcome, as the
 * UI asks for them (a page of 100 and its count).
 */
const PAGES: Record<string, AuditPageRequest> = {
  unfiltered: { limit: 100 },
  outcome_denied: { filter: { outcome: ['denied'] }, limit: 100 },
  outcome_denied_or_error: { filter: { outcome: ['denied', 'error'] }, limit: 100 },
  tool_common: { filter: { tool: 'query' }, limit: 100 },
  tool_rare: { filter: { tool: 'delete_patient' }, limit: 100 },
  user_heaviest: { filter: { user: 'User 0' }, limit: 100 },
  user_light: { filter: { user: 'user-30' }, limit: 100 },
  tier_write_or_sensitive: { filter: { tier: [2, 3] }, limit: 100 },
  user_and_outcome: { filter: { user: 'User 0', outcome: ['error'] }, limit: 100 },
  search_common_word: { filter: { search: 'appointments' }, limit: 100 },
  search_obo_jti: { filter: { search: KEYS.obo_jti! }, limit: 100 },
  search_vault_request_id: { filter: { search: KEYS.vault_request_id! }, limit: 100 },
  search_word_and_outcome: { filter: { search: 'appointments', outcome: ['error'] }, limit: 100 },
};

/** What the `audit.page` handler does for one page (main/core/app.ts): the page with its count. */
function handlerPage(store: AuditStore, q: AuditPageRequest) {
  const page = store.page(q);
  return { records: page.records, total: page.total ?? page.records.length, total_capped: page.total_capped ?? false, head: page.head };
}

type Timed = { t: Percentiles; fastest: number; total: number; capped: boolean };

/**
 * One page at both sizes, the two timed alternately so both see the same machine: on two shared cores
 * a load that comes and goes would otherwise land on one size and not the other.
 */
function timePagePair(small: AuditStore, big: AuditStore, q: AuditPageRequest, runs: number): { at_10k: Timed; at_1m: Timed } {
  const stores = [small, big] as const;
  const samples: [number[], number[]] = [[], []];
  const last = stores.map((s) => {
    for (let i = 0; i < 5; i++) handlerPage(s, q);
    return handlerPage(s, q);
  });
  for (let i = 0; i < runs; i++) {
    stores.forEach((s, k) => {
      const t = performance.now();
      last[k] = handlerPage(s, q);
      samples[k]!.push(performance.now() - t);
    });
  }
  const timed = (k: 0 | 1): Timed => {
    if (last[k]!.records.length === 0) throw new Error(`the page ${JSON.stringify(q)} matched nothing`);
    return { t: percentiles(samples[k]!), fastest: Math.min(...samples[k]!), total: last[k]!.total, capped: last[k]!.total_capped };
  };
  return { at_10k: timed(0), at_1m: timed(1) };
}

type PagePairs = Record<string, { at_10k: Timed; at_1m: Timed }>;

/** Every page of PAGES at both sizes (timePagePair), 100 samples each. */
export function timePages(small: AuditStore, big: AuditStore): PagePairs {
  const pages: PagePairs = {};
  for (const [name, q] of Object.entries(PAGES)) pages[name] = timePagePair(small, big, q, 100);
  return pages;
}

/** Install keys kept in a file beside a store the bench reuses, so it reopens with the keys it was filled with. */
function fileSecrets(path: string): SecretStore {
  const read = (): Record<string, string> => (existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as Record<string, string>) : {});
  const write = (m: Record<string, string>) => writeFileSync(path, JSON.stringify(m), { mode: 0o600 });
  return {
    kind: 'memory',
    get: async (k) => read()[k] ?? null,
    set: async (k, v) => write({ ...read(), [k]: v }),
    delete: async (k) => {
      const m = read();
      delete m[k];
      write(m);
    },
  };
}

/**
 * A store of `n` bench records at `dir`/`name`: filled now, or, under BENCH_AUDIT_STORES, reused when
 * an earlier run left it there with exactly `n` records (a store holding anything else is refilled).
 * Returns the seconds the fill took, or null for a reused store.
 */
export async function filledStore(dir: string, name: string, n: number): Promise<{ store: AuditStore; fill_s: number | null }> {
  const dataDir = join(dir, name);
  const open = () => AuditStore.open({ dataDir, secrets: fileSecrets(join(dir, `${name}.keys.json`)) });
  if (existsSync(dataDir)) {
    const kept = await open();
    if (kept.stats().count === n) return { store: kept, fill_s: null };
    await kept.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
  mkdirSync(dir, { recursive: true });
  const store = await open();
  const t0 = performance.now();
  fill(store, n);
  return { store, fill_s: (performance.now() - t0) / 1000 };
}

export function fill(store: AuditStore, n: number): void {
  const batch = 10_000;
  for (let start = 0; start < n; start += batch) store.appendMany(records(Math.min(batch, n - start), 1 + start / batch, start));
}

/** One turn of the event loop, as between two calls in the app: the store's timers (its index flush) run in it. */
const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Durable appends against a bare node:sqlite insert loop, paired: each iteration times one bare insert
 * (autocommit, WAL, synchronous=FULL, a body of the same size) and then one awaited `append` with the
 * index work it leaves, so both see the same disk at the same moment. On a shared machine whose fsync
 * latency swings by 10x from one second to the next, timing the two loops one after the other
 * measures the neighbours. The index work is counted two ways:
 * - `schedule: 'app'`: each append is followed by a turn of the event loop, as between two calls, so
 *   the store writes the deferred index rows on its own schedule (its 200 ms timer, or at 1,024 rows)
 *   inside the timed span; the last are written before the clock stops. The bare loop needs no turn:
 *   nothing of it is deferred;
 * - `schedule: 'each'`: each append's index rows are written at once, in a transaction of their own:
 *   what a record costs when calls come more than 200 ms apart and every flush holds one record.
 */
export async function pairedAppendsPerSecond(dir: string, n: number, schedule: 'app' | 'each'): Promise<{ audit: number; raw: number }> {
  const db = new DatabaseSync(join(dir, `raw-${schedule}.db`));
  db.exec('PRAGMA journal_mode = WAL');
  db.exec('PRAGMA synchronous = FULL');
  db.exec('CREATE TABLE r (seq INTEGER PRIMARY KEY, body TEXT NOT NULL)');
  const insert = db.prepare('INSERT INTO r (body) VALUES (?)');
  const store = await AuditStore.open({ dataDir: join(dir, `audit-${schedule}`), secrets: memorySecrets() });
  const inputs = records(n, 99);
  const bodies = inputs.map((r) => canonicalJson(r));
  let rawMs = 0;
  let auditMs = 0;
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    insert.run(bodies[i]!);
    const t1 = performance.now();
    await store.append(inputs[i]!);
    if (schedule === 'each') store.flushIndex();
    else await turn();
    const t2 = performance.now();
    rawMs += t1 - t0;
    auditMs += t2 - t1;
  }
  const t = performance.now();
  store.flushIndex();
  auditMs += performance.now() - t;
  db.close();
  await store.close();
  return { audit: (n / auditMs) * 1000, raw: (n / rawMs) * 1000 };
}

const APPENDS_CHILD = fileURLToPath(new URL('./fixtures/appends-child.ts', import.meta.url));
const PAGES_CHILD = fileURLToPath(new URL('./fixtures/pages-child.ts', import.meta.url));
const VERIFY_CHILD = fileURLToPath(new URL('./fixtures/verify-child.ts', import.meta.url));

export interface VerifyTiming {
  verify_s: number;
  /** The process's RSS with the store open, before the verification, and its peak after it (MB). */
  rss_before_mb: number;
  rss_peak_mb: number;
  /** How long the event loop was held at a time while it ran (ms): what a call arriving then waits. */
  stall_ms: { p99: number; max: number };
}

/**
 * Verifies a store the bench filled, as the core does when a person asks (bench/fixtures/verify-child.ts
 * runs this in a process with the core's Node options): the whole chain, its time, and what the
 * process held before and at its peak.
 */
export async function timeVerify(dir: string, name: string, n: number): Promise<VerifyTiming> {
  const { store, fill_s: fillS } = await filledStore(dir, name, n);
  if (fillS !== null) throw new Error('the verify process found a store the bench had not filled');
  try {
    const before = process.memoryUsage().rss;
    const stalls = monitorEventLoopDelay({ resolution: 2 });
    stalls.enable();
    const t = performance.now();
    const v = await store.verify();
    const s = (performance.now() - t) / 1000;
    stalls.disable();
    if (!v.ok || v.checked !== n) throw new Error('the bulk-filled chain does not verify');
    // resourceUsage().maxRSS is in kilobytes: the process's high-water mark (VmHWM on Linux).
    return {
      verify_s: s,
      rss_before_mb: before / 1024 / 1024,
      rss_peak_mb: process.resourceUsage().maxRSS / 1024,
      stall_ms: { p99: stalls.percentile(99) / 1e6, max: stalls.max / 1e6 },
    };
  } finally {
    await store.close();
  }
}

/**
 * `pairedAppendsPerSecond` in a process of its own started with the core's Node options (its young
 * generation, its heap limit), as the core appends: not in the bench's process, with V8's defaults and
 * the million-record store's pages and garbage beside it.
 */
async function pairedAppendsApart(dir: string, n: number, schedule: 'app' | 'each'): Promise<{ audit: number; raw: number }> {
  return runApart(APPENDS_CHILD, { BENCH_APPENDS: JSON.stringify({ dir, n, schedule }) }, 'the paired appends');
}

export async function benchAudit(o: { big?: number } = {}) {
  const bigN = o.big ?? 1_000_000;
  const root = mkdtempSync(join(tmpdir(), 'cs-audit-bench-'));
  const stores = process.env.BENCH_AUDIT_STORES ?? root;
  try {
    const pairedDir = mkdtempSync(join(root, 'paired-'));
    const paired = await pairedAppendsApart(pairedDir, 2000, 'app');
    const pairedEach = await pairedAppendsApart(pairedDir, 2000, 'each');
    const { store: small } = await filledStore(stores, 'small', 10_000);
    const { store: big, fill_s: fillS } = await filledStore(stores, `big-${bigN}`, bigN);
    const dbBytes = big.stats().db_bytes;
    await small.close();
    await big.close();
    // The chain is verified as the core verifies it: in a process with its Node options (its young
    // generation, its heap limit), not in this one with V8's defaults beside the fill's garbage.
    const verified = await runApart<VerifyTiming>(VERIFY_CHILD, { BENCH_VERIFY: JSON.stringify({ dir: stores, name: `big-${bigN}`, n: bigN }) }, 'the verification');
    // The pages are read as the core reads them: in a process started with its Node options, not in
    // this one beside the fill's garbage.
    const pages = await runApart<PagePairs>(PAGES_CHILD, { BENCH_PAGES: JSON.stringify({ dir: stores, big: `big-${bigN}`, n: bigN }) }, 'the audit pages');
    return { pages, appends: paired, appendsEach: pairedEach, fill_s: fillS === null ? null : round(fillS, 1), verified, db_bytes: dbBytes, big: bigN };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/** The audit store's figures for bench/run.ts. */
export async function bench(): Promise<Figures> {
  const r = await benchAudit();
  const f: Figures = {};
  for (const [name, p] of Object.entries(r.pages)) {
    const q = JSON.stringify(PAGES[name]!.filter ?? {});
    const count = (x: { total: number; capped: boolean }) => `${x.total}${x.capped ? '+' : ''}`;
    f[`audit_page.${name}.at_10k`] = plain(p.at_10k.t, 'ms', `audit.page with filter ${q} as the handler computes it (100 newest and the count, ${count(p.at_10k)}), 10,000 records`);
    f[`audit_page.${name}.at_1m`] = plain(p.at_1m.t, 'ms', `the same with 1,000,000 records (count ${count(p.at_1m)})`);
    f[`audit_page.${name}.1m_vs_10k`] = goal(ratioOf(p.at_1m.t.p50, p.at_10k.t.p50), 'ratio', '<=', 2, `the page for ${q} at 1,000,000 records over the same at 10,000 (p50)`);
    // On two shared cores a neighbour's burst stretches a 1 ms page tenfold; the fastest sample of each
    // size is the one it disturbed least, so this ratio shows what the store itself adds (a detail).
    f[`audit_page.${name}.1m_vs_10k_fastest`] = plain(ratioOf(p.at_1m.fastest, p.at_10k.fastest), 'ratio', `the same over the fastest of the 100 samples at each size (a detail)`);
  }
  Object.assign(f, {
    audit_append_per_s: plain(Math.round(r.appends.audit), 'per_s', "durable appends per second, one caller, a turn of the event loop after each, the index rows written on the store's own schedule inside the timed span"),
    sqlite_raw_append_per_s: plain(Math.round(r.appends.raw), 'per_s', 'a bare node:sqlite insert loop with the same durability, paired with the appends (baseline)'),
    audit_append_vs_sqlite_raw: goal(ratioOf(r.appends.audit, r.appends.raw), 'ratio', '>=', 0.5, 'durable appends with all their index rows per second over the bare insert loop'),
    audit_append_index_each_per_s: plain(Math.round(r.appendsEach.audit), 'per_s', "the same with each append's index rows written at once, in a transaction of their own (a detail: calls more than 200 ms apart)"),
    audit_append_index_each_vs_sqlite_raw: plain(ratioOf(r.appendsEach.audit, r.appendsEach.raw), 'ratio', 'that over its own paired bare insert loop (a detail)'),
    ...(r.fill_s === null ? {} : { audit_fill_1m_s: plain(r.fill_s, 's', `filling the 1,000,000-record store in batches of 10,000 (a detail)`) }),
    audit_verify_1m_s: plain(
      round(r.verified.verify_s, 1),
      's',
      "verifying the whole 1,000,000-record chain in a process with the core's Node options, as the core verifies it when asked (a detail)",
    ),
    audit_verify_1m_stall_ms: plain(
      { p99: round(r.verified.stall_ms.p99, 1), max: round(r.verified.stall_ms.max, 1) },
      'ms',
      'how long that verification held the event loop at a time, p99 and the longest (monitorEventLoopDelay): what a call arriving during a verification waits before the core can read it (a detail)',
    ),
    'rss_mb.audit_verify_1m': plain(
      { before: round(r.verified.rss_before_mb, 1), peak: round(r.verified.rss_peak_mb, 1) },
      'MB',
      "that process's RSS with the 1,000,000-record store open, before the verification and at its peak (a detail: Node, the bench's own modules and the store, without the rest of the core; the difference is what a verification adds while it runs)",
    ),
    audit_db_bytes_1m: plain(r.db_bytes, 'bytes', 'the 1,000,000-record store on disk (a detail)'),
  });
  return f;
}
