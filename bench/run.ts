/**
 * `npm run bench`: runs every part named in PARTS in this process, starts the lab once for the parts
 * that ask for it, checks what the lab was left holding, and writes bench/results/latest.json with the
 * figures this run produced, each with its goal and whether it was met (see docs/benchmarks.md).
 *
 * It runs what it reports: a part whose module is missing or fails leaves no figures, the report says
 * `complete: false`, and the command exits 1. Nothing is read from an earlier run.
 *
 * Knobs: BENCH_PARTS_DIR and BENCH_RESULTS_DIR read parts from and write to elsewhere than bench/ (tests);
 * BENCH_RESULTS_DIR writes elsewhere than bench/results; BENCH_ONLY=bridge,audit,… runs a subset and writes bench/results/partial.json instead (latest.json
 * is only ever a whole run); BENCH_CORE_CALLS (default 10000) sets how many calls the core serves.
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import pg from 'pg';
import { startLab, type Lab } from '../lab/index.ts';
import { goal, type BenchContext, type BenchPart, type Figures } from './figures.ts';
import { buildReport, formatTable, type PartOutcome } from './report.ts';

/** The parts of a whole run, in the order they run. A part is one line: its name and its module in bench/. */
export const PARTS: ReadonlyArray<{ name: string; file: string }> = [
  { name: 'bridge', file: 'bridge.bench.ts' },
  { name: 'audit', file: 'audit.bench.ts' },
  { name: 'broker', file: 'broker.bench.ts' },
  { name: 'core', file: 'core.bench.ts' },
  { name: 'timeline', file: 'timeline.bench.ts' },
  { name: 'sql', file: 'sql.bench.ts' },
  { name: 'reliability', file: 'reliability.bench.ts' },
];

const ROOT = fileURLToPath(new URL('../', import.meta.url));
/** Where the part modules are (BENCH_PARTS_DIR; a test points it at an empty directory). */
const PARTS_DIR = process.env.BENCH_PARTS_DIR ?? join(ROOT, 'bench');
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((s) => s.trim())) : null;
const log = (line: string): void => void process.stderr.write(`bench: ${line}\n`);

async function leftovers(lab: Lab): Promise<{ pg_roles: number; vault_leases: number }> {
  const pool = new pg.Pool({ connectionString: lab.postgresAdminUrl, max: 1 });
  pool.on('error', () => {});
  try {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const roles = (await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_roles WHERE rolname LIKE 'v-%'")).rows[0]!.n;
      const leases = lab.vault.leases();
      if ((roles === 0 && leases === 0) || Date.now() > deadline) return { pg_roles: roles, vault_leases: leases };
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await pool.end();
  }
}

function resources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) counts.set(r, (counts.get(r) ?? 0) + 1);
  return counts;
}

async function main(): Promise<number> {
  const started = new Date();
  const baseline = resources();
  const unknown = ONLY ? [...ONLY].filter((n) => !PARTS.some((p) => p.name === n)) : [];
  if (unknown.length > 0) {
    log(`BENCH_ONLY names no part called ${unknown.join(', ')} (parts: ${PARTS.map((p) => p.name).join(', ')})`);
    return 2;
  }
  const parts: Record<string, PartOutcome> = {};
  const figures: Figures = {};
  let lab: Promise<Lab> | undefined;
  const ctx: BenchContext = {
    lab: () => (lab ??= startLab({ log: () => {} })),
    log,
    coreCalls: Number(process.env.BENCH_CORE_CALLS ?? 10_000),
  };

  for (const part of PARTS) {
    if (ONLY && !ONLY.has(part.name)) continue;
    const file = join(PARTS_DIR, part.file);
    if (!existsSync(file)) {
      parts[part.name] = { ok: false, reason: `${relative(ROOT, file)} does not exist` };
      log(`${part.name}: ${parts[part.name]!.reason}`);
      continue;
    }
    const t0 = performance.now();
    log(`${part.name}…`);
    try {
      const mod = (await import(pathToFileURL(file).href)) as { bench?: BenchPart };
      if (typeof mod.bench !== 'function') throw new Error(`${relative(ROOT, file)} exports no bench(ctx) function`);
      const produced = await mod.bench(ctx);
      for (const [k, f] of Object.entries(produced)) {
        if (k in figures) throw new Error(`figure ${k} is produced by two parts`);
        figures[k] = f;
      }
      parts[part.name] = { ok: true, seconds: Math.round((performance.now() - t0) / 100) / 10 };
      log(`${part.name} done in ${parts[part.name]!.seconds} s`);
    } catch (error) {
      const e = error as Error;
      parts[part.name] = { ok: false, seconds: Math.round((performance.now() - t0) / 100) / 10, reason: `${e.name}: ${String(e.message).split('\n')[0]!.slice(0, 300)}` };
      log(`${part.name} failed: ${parts[part.name]!.reason}`);
    }
  }

  if (lab) {
    // What every part that used the lab left in it: per-call roles and Vault leases.
    try {
      const l = await lab;
      try {
        const left = await leftovers(l);
        figures['leaks.pg_roles'] = goal(left.pg_roles, 'count', '<=', 0, "per-call PostgreSQL roles (v-…) still in pg_roles after every part that used the lab (waited up to 10 s)");
        figures['leaks.vault_leases'] = goal(left.vault_leases, 'count', '<=', 0, 'Vault leases still held after every part that used the lab');
        parts.leaks = { ok: true };
      } finally {
        await l.stop();
      }
    } catch (error) {
      parts.leaks = { ok: false, reason: `the lab could not be checked: ${(error as Error).message.slice(0, 200)}` };
    }
  }
  // Handles still open once every part has stopped what it started (beyond those at start).
  await new Promise((r) => setTimeout(r, 500));
  const now = resources();
  let open = 0;
  for (const [k, n] of now) open += Math.max(0, n - (baseline.get(k) ?? 0));
  figures['leaks.open_handles'] = goal(open, 'count', '<=', 0, 'sockets, child processes and timers this process holds after every part, beyond those it had at start');

  const report = buildReport(parts, figures, {
    started_at: started.toISOString(),
    finished_at: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model ?? 'unknown',
    mem_gb: Math.round(totalmem() / 2 ** 30),
    only: ONLY ? [...ONLY] : null,
    open_resources_at_end: Object.fromEntries(now),
  });
  const out = join(process.env.BENCH_RESULTS_DIR ?? join(ROOT, 'bench', 'results'), ONLY ? 'partial.json' : 'latest.json');
  await mkdir(dirname(out), { recursive: true });
  await writeFile(out, JSON.stringify(report, null, 2) + '\n');
  process.stdout.write(`${formatTable(report)}\n\nwritten: ${out}\n`);
  if (!report.complete) log(`incomplete: ${Object.entries(parts).filter(([, p]) => !p.ok).map(([n, p]) => `${n} (${p.reason})`).join('; ') || 'a figure with a goal has no value'}`);
  return report.complete ? 0 : 1;
}

if (import.meta.filename === process.argv[1]) process.exit(await main());
