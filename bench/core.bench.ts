/**
 * The whole core in its own process (startCore, as the reliability suite's fixture runs it, with the
 * options every launcher of a headless core gives it), driven over its socket with tier-1 `query` calls
 * at concurrency 32 against the lab:
 * - rss_mb.core_after_warmup / core_after_10k_calls / core_peak: the core process's resident memory
 *   (VmRSS, VmHWM) after 500 calls, after BENCH_CORE_CALLS calls (10,000), and its peak over the run;
 * - rss_mb.core_samples: VmRSS every 1,000 calls, so "flat" can be seen, and core_growth_after_warmup;
 * - rss_mb.core_peak_after_oversized_results: VmHWM after four concurrent calls whose statement answers
 *   64 MB each, which the core refuses (core.oversized_results_refused) after reading about its
 *   maxResultBytes (512 KiB);
 * - tier1_call_via_socket / tier1_call_via_bridge: the same real call straight on the socket and through
 *   the bridge, alternating (the bridge's third goal).
 *
 * The core runs bundled (scripts/core-bundle.mjs), as the desktop app's utility process and a
 * `countersign serve` with a fresh dist/ run it; rss_mb.type_stripping is what running it from its
 * TypeScript sources would add.
 *
 * Run alone: `BENCH_ONLY=core node bench/run.ts`.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connectOnce } from '../bridge/core-connection.ts';
import { resolvePaths } from '../common/paths.ts';
import { CORE_NODE_OPTIONS } from '../main/headless/start.ts';
import { decodeJwt, signIn } from '../test/lab/idp-fixtures.ts';
import { buildBridgeInto, relayAgainstCore } from './bridge.bench.ts';
import { goal, plain, ratioOf, type BenchContext, type Figures } from './figures.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const SQL = 'SELECT id, full_name FROM patients ORDER BY id LIMIT 5';
const WARMUP = 500;
const OVERSIZED_SQL = "SELECT repeat('x', 64000000) AS big";
const OVERSIZED_CALLS = 4;
const RSS_GOAL_MB = 150;

/** The reliability suite's core fixture, bundled with the options of the shipped core bundles. */
async function bundleCoreChild(): Promise<string> {
  const { build } = await import('esbuild');
  const { coreBundleOptions } = await import('../scripts/core-bundle.mjs');
  const outfile = 'dist/bench/core-child.mjs';
  await build(coreBundleOptions({ root: ROOT, entry: 'test/reliability/fixtures/core-child.ts', outfile }));
  return join(ROOT, outfile);
}

/** VmRSS of a bare Node that imported one tiny module, as .ts (type stripping loaded) minus as .mjs. */
async function typeStrippingMb(dir: string): Promise<number> {
  await writeFile(join(dir, 'one.ts'), 'export const one: number = 1;\n');
  await writeFile(join(dir, 'one.mjs'), 'export const one = 1;\n');
  const rss = (file: string) =>
    Number(execFileSync(process.execPath, [...CORE_NODE_OPTIONS, '--input-type=module', '-e', `await import(${JSON.stringify(join(dir, file))}); console.log(process.memoryUsage().rss)`], { encoding: 'utf8' }).trim()) / 2 ** 20;
  const runs = [0, 1, 2].map(() => rss('one.ts') - rss('one.mjs')).sort((a, b) => a - b);
  return Math.round(runs[1]! * 10) / 10;
}

function vm(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round((Number(m[1]) / 1024) * 10) / 10 : NaN;
}

export async function bench(ctx: BenchContext): Promise<Figures> {
  const lab = await ctx.lab();
  const calls = ctx.coreCalls;
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
        vault: { address: lab.vaultAddr, timeoutMs: 15_000, allowInsecureHttpForLoopbackOnly: true },
        policyFile: join(ROOT, 'main/core/policy/demo-clinic.policy.jsonc'),
        postgres: { host: lab.pg.host, port: lab.pg.port, database: lab.pg.database },
        demo: true,
      }),
    );
    const c = spawn(process.execPath, [...CORE_NODE_OPTIONS, await bundleCoreChild()], {
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
    let done = 0;
    const samples: Record<string, number> = {};
    const run = async (n: number) => {
      let next = 0;
      await Promise.all(
        Array.from({ length: 32 }, async () => {
          while (next++ < n) {
            const r = await request('tools/call', { name: 'query', arguments: { sql: SQL } });
            if (r.result?.isError) failed += 1;
            done += 1;
            if (done % 1000 === 0) samples[String(done)] = vm(c.pid!, 'VmRSS');
          }
        }),
      );
    };
    const warm = Math.min(WARMUP, calls);
    await run(warm);
    const afterWarmup = vm(c.pid!, 'VmRSS');
    await run(calls - warm);
    const afterCalls = vm(c.pid!, 'VmRSS');
    const peak = vm(c.pid!, 'VmHWM');
    // Then calls whose statement answers 64 MB each, four at a time: the core reads about its
    // maxResultBytes of each and refuses it, so its peak stays where the ordinary calls left it.
    const oversized = await Promise.all(
      Array.from({ length: OVERSIZED_CALLS }, () => request('tools/call', { name: 'query', arguments: { sql: OVERSIZED_SQL } })),
    );
    const refused = oversized.filter((r) => JSON.stringify(r.result ?? {}).includes('[RESULT_TOO_LARGE]')).length;
    const peakAfterOversized = vm(c.pid!, 'VmHWM');
    socket.destroy();
    // The bridge's relay in front of this real tier-1 call (the whole core against the lab).
    const tier1 = await relayAgainstCore({
      paths,
      bridgePath: buildBridgeInto(work),
      env: { PATH: process.env.PATH ?? '', COUNTERSIGN_HOME: home, COUNTERSIGN_APP_CMD: '[]' },
      call: (n) => ({ jsonrpc: '2.0', id: n, method: 'tools/call', params: { name: 'query', arguments: { sql: SQL } } }),
      calls: 100,
    });
    const tenK = calls >= 10_000;
    const after10k = goal(tenK ? afterCalls : null, 'MB', '<=', RSS_GOAL_MB, `the core's VmRSS after it served 10,000 tier-1 calls at concurrency 32`);
    if (!tenK) after10k.missing = `the core served ${calls} calls only (BENCH_CORE_CALLS); rss_mb.core_after_calls has the figure`;
    return {
      'rss_mb.core_after_warmup': goal(afterWarmup, 'MB', '<=', RSS_GOAL_MB, `the core's VmRSS after ${warm} tier-1 calls (its parser, grammar and connections warm)`),
      'rss_mb.core_after_10k_calls': after10k,
      ...(tenK ? {} : { 'rss_mb.core_after_calls': plain(afterCalls, 'MB', `the core's VmRSS after ${calls} calls`) }),
      'rss_mb.core_peak': goal(peak, 'MB', '<=', RSS_GOAL_MB, `the core's peak VmRSS (VmHWM) from its start to the last of ${calls} calls`),
      'rss_mb.core_peak_after_oversized_results': goal(
        peakAfterOversized,
        'MB',
        '<=',
        RSS_GOAL_MB,
        `the core's peak VmRSS (VmHWM) after ${OVERSIZED_CALLS} concurrent calls whose statement answers 64 MB each (${OVERSIZED_SQL}), following the ${calls} calls above`,
      ),
      'core.oversized_results_refused': goal(refused, 'count', '>=', OVERSIZED_CALLS, `of those ${OVERSIZED_CALLS} calls, the ones answered RESULT_TOO_LARGE`),
      'rss_mb.core_growth_after_warmup': goal(ratioOf(afterCalls, afterWarmup), 'ratio', '<=', 1.1, `VmRSS after ${calls} calls over VmRSS after the warm-up: flat is 1`),
      'rss_mb.core_samples': plain(samples, 'MB', 'VmRSS of the core every 1,000 calls (a detail)'),
      'rss_mb.type_stripping': plain(await typeStrippingMb(work), 'MB', "what a core run from its TypeScript sources adds (Node's type stripping: a bare Node importing one .ts module over one .mjs, median of 3); not in the figures above"),
      'core.calls_failed': goal(failed, 'count', '<=', 0, `calls of the ${calls} that answered isError`),
      tier1_call_via_socket: plain(tier1.via_socket, 'ms', 'a real tier-1 query straight on the core socket, 100 calls alternating with the bridge (baseline)'),
      tier1_call_via_bridge: plain(tier1.via_bridge, 'ms', 'the same call through the bridge'),
      bridge_tier1_call_vs_socket: goal(
        ratioOf(tier1.via_bridge.p50, tier1.via_socket.p50),
        'ratio',
        '<=',
        1.05,
        'a real tier-1 query (the whole core against the lab: exchange, Vault, PostgreSQL, revoke, audit) through the bridge over the same on the core socket, alternating (p50)',
      ),
    };
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
