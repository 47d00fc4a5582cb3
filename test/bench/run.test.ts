import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { goal, plain } from '../../bench/figures.ts';
import { buildReport } from '../../bench/report.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');
let out: string;
beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), 'cs-bench-run-'));
});
afterAll(async () => {
  await rm(out, { recursive: true, force: true });
});

describe('npm run bench', () => {
  it('fails and says which part is missing when a part has no module, and writes no figure for it', async () => {
    const failed = await run(process.execPath, [join(ROOT, 'bench/run.ts')], {
      cwd: ROOT,
      env: { ...process.env, BENCH_ONLY: 'reliability', BENCH_RESULTS_DIR: out, BENCH_PARTS_DIR: out },
    }).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(failed?.code).toBe(1);
    const report = JSON.parse(await readFile(join(out, 'partial.json'), 'utf8')) as { complete: boolean; parts: Record<string, { ok: boolean; reason: string }>; figures: Record<string, unknown> };
    expect(report.complete).toBe(false);
    expect(report.parts.reliability).toMatchObject({ ok: false, reason: expect.stringContaining('does not exist') });
    expect(Object.keys(report.figures).filter((k) => k.startsWith('reliability'))).toEqual([]);
  });

  it('refuses a BENCH_ONLY that names no part', async () => {
    const failed = await run(process.execPath, [join(ROOT, 'bench/run.ts')], { cwd: ROOT, env: { ...process.env, BENCH_ONLY: 'nonesuch', BENCH_RESULTS_DIR: out } }).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(failed?.code).toBe(2);
    expect(failed?.stderr).toContain('nonesuch');
  });
});

describe('the report', () => {
  it('judges each figure against its goal and is incomplete while a goal has no value', () => {
    const report = buildReport(
      { a: { ok: true } },
      {
        fast: goal({ p50: 4, p95: 6, p99: 9 }, 'ms', '<=', 5, 'p50 under 5'),
        tail: goal({ p50: 4, p95: 6, p99: 9 }, 'ms', '<=', 5, 'p99 under 5', 'p99'),
        rate: goal(0.4, 'ratio', '>=', 0.5, 'at least half'),
        base: plain(12, 'ms', 'a baseline'),
        absent: goal(null, 'MB', '<=', 150, 'not measured'),
      },
      {},
    );
    expect(report.figures.fast!.met).toBe(true);
    expect(report.figures.tail!.met).toBe(false);
    expect(report.figures.rate!.met).toBe(false);
    expect(report.figures.base).toMatchObject({ goal: null, met: null });
    expect(report.goals).toEqual({ met: 1, not_met: 2, unmeasured: 1, not_met_keys: ['tail', 'rate'] });
    expect(report.complete).toBe(false);
  });

  it('is incomplete when a part did not run, even if every figure it has met its goal', () => {
    const report = buildReport({ a: { ok: true }, b: { ok: false, reason: 'bench/b.bench.ts does not exist' } }, { x: goal(1, 'count', '<=', 1, 'x') }, {});
    expect(report.complete).toBe(false);
    expect(buildReport({ a: { ok: true } }, { x: goal(1, 'count', '<=', 1, 'x') }, {}).complete).toBe(true);
  });
});
