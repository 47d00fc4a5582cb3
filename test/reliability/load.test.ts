import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, heapAfterGc, LONG, pool, reportCounters, startReliabilityLab, type ReliabilityLab } from './harness.ts';
import { compareIds, requestIdCounts } from './process-faults.ts';

const N = LONG ? 10_000 : 1_000;
const WARM_UP = LONG ? 1_000 : 200;
const CONCURRENCY = 32;
/** Generous: a leak of even a few hundred bytes per call shows over 10,000 calls; noise of GC timing does not. */
const HEAP_GROWTH_LIMIT_MB = LONG ? 48 : 32;

let r: ReliabilityLab;

beforeAll(async () => {
  r = await startReliabilityLab();
}, 60_000);
afterAll(async () => {
  await r?.stop();
});

const QUERIES = [
  { sql: 'SELECT id, full_name FROM patients ORDER BY id' },
  { sql: 'SELECT count(*)::int AS n FROM appointments WHERE status = $1', params: ['scheduled'] },
  { sql: 'SELECT a.id, a.starts_at FROM appointments a JOIN patients p ON p.id = a.patient_id ORDER BY a.id LIMIT 5' },
  { sql: 'SELECT id, body FROM notes ORDER BY id LIMIT 3' },
];

describe(`load: ${N} tier-1 calls at concurrency ${CONCURRENCY} through the broker against the lab`, () => {
  // A time budget, not a speed claim: ~60 s alone on 2 cores, more beside the rest of the suite.
  it('loses no audit record, keeps the chain verifiable, leaves no role or lease, and keeps memory flat', { timeout: LONG ? 900_000 : 300_000 }, async () => {
    const broker = r.broker();
    const sent: Array<string | number> = [];
    const run = async (from: number, count: number) =>
      pool(count, CONCURRENCY, async (i) => {
        const request = call('query', QUERIES[(from + i) % QUERIES.length]!);
        sent.push(request.requestId);
        const result = await broker.callTool(request);
        return result.isError ? (result.content[0] as { text: string }).text : null;
      });

    const warm = await run(0, WARM_UP);
    const heapWarm = await heapAfterGc();
    const started = performance.now();
    const rest = await run(WARM_UP, N - WARM_UP);
    const seconds = (performance.now() - started) / 1000;
    const heapEnd = await heapAfterGc();

    const errors = [...warm, ...rest].filter((e): e is string => e !== null);
    // Counted one by one: every request id sent has exactly one record, and no record has an id never sent.
    const ids = compareIds(sent, requestIdCounts(r.audit));
    const lost = ids.lost.length;
    const verify = await r.audit.verify();
    const left = await r.settled(10_000);
    const growthMb = (heapEnd - heapWarm) / 2 ** 20;
    const callsPerS = Math.round(((N - WARM_UP) / seconds) * 10) / 10;
    await reportCounters('load', { lost_records: lost, calls: N }, {
      duplicated_records: ids.duplicated.length,
      records_without_request: ids.unsent.length,
      load_calls_per_s: callsPerS,
      heap_warm_mb: Math.round(heapWarm / 2 ** 20),
      heap_end_mb: Math.round(heapEnd / 2 ** 20),
      leftover_roles: left.roles.length,
      leftover_leases: left.leases,
      failed_calls: errors.length,
    });

    expect(errors.slice(0, 3), `${errors.length} calls failed`).toEqual([]);
    expect(sent).toHaveLength(N);
    expect(ids).toEqual({ lost: [], duplicated: [], unsent: [] });
    expect(verify.ok, JSON.stringify(verify.firstBad)).toBe(true);
    expect(verify.checked).toBeGreaterThanOrEqual(N);
    const records = r.audit.page({ limit: 50 }).records;
    expect(records.every((rec) => rec.outcome === 'success' && rec.keys.obo_jti && rec.keys.db_role)).toBe(true);
    expect(left).toEqual({ roles: [], leases: 0 });
    const perCallRoles = await r.admin<{ n: number }>("SELECT count(*)::int AS n FROM pg_roles WHERE rolname LIKE 'v-%'");
    expect(perCallRoles[0]!.n).toBe(0);
    expect(growthMb, `heap grew ${growthMb.toFixed(1)} MB between call ${WARM_UP} and call ${N}`).toBeLessThan(HEAP_GROWTH_LIMIT_MB);
  });
});
