/**
 * `npm run bench`: runs every benchmark module that exists (bridge, broker, audit, timeline) in one
 * process, starts the lab for the ones that need it, measures the core's memory after many calls and
 * what is left behind, adds the reliability suite's counters when test-results/reliability.json exists,
 * prints a table and writes bench/results/latest.json (see docs/benchmarks.md).
 *
 * Knobs: BENCH_ONLY=bridge,broker,core,audit,timeline runs a subset (the rest is reported null with
 * that reason); BENCH_CORE_CALLS (default 10000) sets how many calls the core serves before its RSS is read.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { connectOnce } from '../bridge/relay.ts';
import { resolvePaths } from '../common/paths.ts';
import { startLab, type Lab } from '../lab/index.ts';
import { CORE_NODE_OPTIONS } from '../main/headless/start.ts';
import { signIn, decodeJwt } from '../test/lab/idp-fixtures.ts';
import { buildReport, formatTable, type Measured } from './report.ts';
import type * as AuditBench from './audit.bench.ts';
import type * as BridgeBench from './bridge.bench.ts';
import type * as BrokerBench from './broker.bench.ts';
import type * as TimelineBench from './timeline.bench.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',').map((s) => s.trim())) : null;
const CORE_CALLS = Number(process.env.BENCH_CORE_CALLS ?? 10_000);
const wanted = (name: string): boolean => !ONLY || ONLY.has(name);
const log = (line: string): void => void process.stderr.write(`bench: ${line}\n`);

const measured: Measured = {};
const reasons: Record<string, string> = {};

/** Imports a benchmark module if its file exists; records why not otherwise. */
async function load<T>(name: string, file: string): Promise<T | null> {
  if (!wanted(name)) {
    reasons[name] = `skipped (BENCH_ONLY=${process.env.BENCH_ONLY})`;
    return null;
  }
  if (!existsSync(join(ROOT, 'bench', file))) {
    reasons[name] = `bench/${file} does not exist yet`;
    return null;
  }
  return (await import(`./${file}`)) as T;
}

async function attempt(name: string, run: () => Promise<void>): Promise<void> {
  const t0 = performance.now();
  log(`${name}…`);
  try {
    await run();
    log(`${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  } catch (error) {
    const e = error as Error;
    reasons[name] = `${name} failed: ${e.name}: ${String(e.message).split('\n')[0]!.slice(0, 300)}`;
    log(reasons[name]);
  }
}

function vm(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : NaN;
}

/** The whole core in its own process (the reliability suite's fixture), driven over its socket with tier-1 calls. */
async function benchCoreMemory(lab: Lab): Promise<NonNullable<Measured['core']>> {
  const work = await mkdtemp(join(tmpdir(), 'countersign-bench-core-'));
  let child: ChildProcess | undefined;
  try {
    const home = join(work, 'home');
    const tokens = (await signIn(lab.idp, { username: 'alice', password: 'alice-lab-pw' })) as { access_token: string };
    const configFile = join(work, 'config.json');
    await writeFile(
      configFile,
      JSON.stringify({
        idp: { issuer: lab.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true },
        vault: { address: lab.vaultAddr, timeoutMs: 15_000 },
        policyFile: join(ROOT, 'main/core/policy/demo-clinic.policy.jsonc'),
        postgres: { host: lab.pg.host, port: lab.pg.port, database: lab.pg.database },
        demo: true,
      }),
    );
    // started with the options every launcher of a headless core gives it (CORE_NODE_OPTIONS)
    const c = spawn(process.execPath, [...CORE_NODE_OPTIONS, join(ROOT, 'test/reliability/fixtures/core-child.ts')], {
      env: { ...process.env, CS_CORE_CHILD: JSON.stringify({ home, configFile, accessToken: tokens.access_token, sub: String(decodeJwt(tokens.access_token).sub) }) },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    child = c;
    await new Promise<void>((resolve, reject) => {
      let out = '';
      c.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready ')) resolve();
      });
      c.once('exit', (code) => reject(new Error(`the core exited with ${code}`)));
    });
    const paths = resolvePaths({ platform: process.platform, env: { COUNTERSIGN_HOME: home }, home });
    const { socket } = await connectOnce(paths);
    const waiting = new Map<number, (m: { result?: { isError?: boolean } }) => void>();
    let buffer = '';
    socket.on('data', (d: Buffer) => {
      buffer += d.toString('utf8');
      for (let nl = buffer.indexOf('\n'); nl !== -1; nl = buffer.indexOf('\n')) {
        const m = JSON.parse(buffer.slice(0, nl)) as { id?: number; result?: { isError?: boolean } };
        buffer = buffer.slice(nl + 1);
        if (typeof m.id === 'number') waiting.get(m.id)?.(m);
      }
    });
    let id = 0;
    const request = (method: string, params: unknown) =>
      new Promise<{ result?: { isError?: boolean } }>((resolve) => {
        const n = ++id;
        waiting.set(n, (m) => {
          waiting.delete(n);
          resolve(m);
        });
        socket.write(JSON.stringify({ jsonrpc: '2.0', id: n, method, params }) + '\n');
      });
    await request('initialize', { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench', version: '0' } });
    socket.write(JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }) + '\n');
    let failed = 0;
    const run = async (n: number) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          while (next++ < n) {
            const r = await request('tools/call', { name: 'query', arguments: { sql: 'SELECT id, full_name FROM patients ORDER BY id LIMIT 5' } });
            if (r.result?.isError) failed += 1;
          }
        }),
      );
    };
    const warm = Math.min(500, CORE_CALLS);
    await run(warm);
    const afterWarmup = vm(c.pid!, 'VmRSS');
    await run(CORE_CALLS - warm);
    const afterCalls = vm(c.pid!, 'VmRSS');
    const peak = vm(c.pid!, 'VmHWM');
    socket.destroy();
    if (wanted('bridge')) {
      // issue 5: the bridge's relay in front of this real tier-1 call (the whole core against the lab)
      const { relayAgainstCore, buildBridgeInto } = await import('./bridge.bench.ts');
      const tier1 = await relayAgainstCore({
        paths,
        bridgePath: buildBridgeInto(work),
        env: { PATH: process.env.PATH ?? '', COUNTERSIGN_HOME: home, COUNTERSIGN_APP_CMD: '[]' },
        call: (n) => ({ jsonrpc: '2.0', id: n, method: 'tools/call', params: { name: 'query', arguments: { sql: 'SELECT id, full_name FROM patients ORDER BY id LIMIT 5' } } }),
        calls: 100,
      });
      measured.bridge = { ...measured.bridge, tier1_call_via_socket: tier1.via_socket, tier1_call_via_bridge: tier1.via_bridge };
    }
    if (failed > 0) log(`core: ${failed} of ${CORE_CALLS} calls answered isError`);
    return { calls: CORE_CALLS, rss_mb_after_warmup: afterWarmup, rss_mb_after_calls: afterCalls, peak_rss_mb: peak };
  } finally {
    if (child && child.exitCode === null) {
      const c = child;
      await new Promise<void>((resolve) => {
        c.once('exit', () => resolve());
        c.kill('SIGTERM');
        setTimeout(() => c.kill('SIGKILL'), 5_000).unref();
      });
    }
    await rm(work, { recursive: true, force: true });
  }
}

async function leftovers(lab: Lab): Promise<{ pg_roles: number; vault_leases: number }> {
  const pool = new pg.Pool({ connectionString: lab.postgresAdminUrl, max: 1 });
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

async function main(): Promise<void> {
  const started = new Date();
  const baseline = resources();

  const bridge = await load<typeof BridgeBench>('bridge', 'bridge.bench.ts');
  if (bridge) await attempt('bridge', async () => void (measured.bridge = await bridge.benchBridge()));

  const audit = await load<typeof AuditBench>('audit', 'audit.bench.ts');
  if (audit) await attempt('audit', async () => void (measured.audit = await audit.benchAudit()));

  const broker = await load<typeof BrokerBench>('broker', 'broker.bench.ts');
  const needLab = !!broker || wanted('core');
  if (needLab) {
    let lab: Lab | undefined;
    await attempt('lab', async () => void (lab = await startLab({ log: () => {} })));
    if (lab) {
      const l = lab;
      try {
        if (broker) await attempt('broker', async () => void (measured.broker = await broker.benchBroker(l)));
        if (wanted('core')) await attempt('core', async () => void (measured.core = await benchCoreMemory(l)));
        else reasons.core = `skipped (BENCH_ONLY=${process.env.BENCH_ONLY})`;
        await attempt('leaks', async () => {
          const left = await leftovers(l);
          measured.leaks = { ...left, open_handles: 0 };
        });
      } finally {
        await l.stop();
      }
    } else {
      reasons.broker ??= reasons.lab ?? 'the lab did not start';
      reasons.core ??= reasons.lab ?? 'the lab did not start';
    }
  } else {
    reasons.core = `skipped (BENCH_ONLY=${process.env.BENCH_ONLY})`;
  }

  const timeline = await load<typeof TimelineBench>('timeline', 'timeline.bench.ts');
  if (timeline) await attempt('timeline', async () => void (measured.timeline = await timeline.benchTimeline()));

  // Handles still open once every benchmark has stopped what it started (beyond those at start).
  await new Promise((r) => setTimeout(r, 500));
  const now = resources();
  let open = 0;
  for (const [k, n] of now) open += Math.max(0, n - (baseline.get(k) ?? 0));
  if (measured.leaks) measured.leaks.open_handles = open;
  else reasons.leaks ??= 'the lab did not run, so nothing could be left in it';

  const reliabilityFile = join(ROOT, 'test-results', 'reliability.json');
  if (existsSync(reliabilityFile)) {
    const r = JSON.parse(readFileSync(reliabilityFile, 'utf8')) as { faults_survived: number; faults_tried: number; bad_inputs_tried: number; lost_records: number; parts?: Array<{ at?: string }> };
    const at = (r.parts ?? []).map((p) => p.at ?? '').sort().at(-1);
    measured.reliability = { faults_survived: r.faults_survived, faults_tried: r.faults_tried, bad_inputs_tried: r.bad_inputs_tried, lost_records: r.lost_records, ...(at ? { at } : {}) };
  } else {
    reasons.reliability = 'test-results/reliability.json does not exist: run `npx vitest run test/reliability` first';
  }

  const report = buildReport(measured, reasons, {
    started_at: started.toISOString(),
    finished_at: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model ?? 'unknown',
    mem_gb: Math.round(totalmem() / 2 ** 30),
    only: ONLY ? [...ONLY] : null,
    broker_samples: measured.broker?.samples ?? null,
    open_resources_at_end: Object.fromEntries(now),
  });
  await mkdir(join(ROOT, 'bench', 'results'), { recursive: true });
  await writeFile(join(ROOT, 'bench', 'results', 'latest.json'), JSON.stringify(report, null, 2) + '\n');
  process.stdout.write(formatTable(report) + '\n\nwritten: bench/results/latest.json\n');
}

await main();
process.exit(0);
