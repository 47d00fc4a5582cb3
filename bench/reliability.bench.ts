/**
 * The reliability figures, produced by running the reliability suite in this `npm run bench`: the
 * tests of test/reliability run in a vitest child process under a run id of their own
 * (RELIABILITY_RUN), each test file writes its counters tagged with it, and only what carries this
 * run's id is read back. Nothing comes from an earlier run; a suite that fails still yields its
 * figures (a fault that failed is not survived), and the count of failed tests is a figure too.
 *
 * Faults are counted by name, once each, split by where they happen (in-process flags and stand-ins
 * against real processes, the network and the OS). Records are counted by request id.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tallyFaults, type FaultOutcome } from '../test/reliability/harness.ts';
import { goal, plain, type BenchContext, type Figures } from './figures.ts';

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const PARTS_DIR = join(ROOT, 'test-results', 'reliability');

interface Part {
  part: string;
  run: string;
  faults?: FaultOutcome[];
  lost_records?: number;
  duplicated_records?: number;
  records_without_request?: number;
  calls?: number;
  bad_inputs_tried?: number;
  leftover_roles?: number;
  leftover_leases?: number;
  secret_hits?: number;
  secrets_planted?: number;
  artifact_bytes_scanned?: number;
}

function runSuite(run: string, reportFile: string, log: (l: string) => void): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(ROOT, 'node_modules/vitest/vitest.mjs'), 'run', 'test/reliability', '--reporter=json', `--outputFile=${reportFile}`], {
      cwd: ROOT,
      env: { ...process.env, RELIABILITY_RUN: run },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let tail = '';
    const keep = (d: Buffer): void => void (tail = (tail + d.toString('utf8')).slice(-4000));
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    child.once('error', reject);
    child.once('exit', (code) => {
      if (code !== 0) log(`reliability: the suite exited ${code}; last output:\n${tail}`);
      resolve(code ?? 1);
    });
  });
}

export async function bench(ctx: BenchContext): Promise<Figures> {
  const run = randomUUID();
  const work = await mkdtemp(join(tmpdir(), 'countersign-bench-reliability-'));
  try {
    const reportFile = join(work, 'vitest.json');
    const t0 = performance.now();
    await runSuite(run, reportFile, ctx.log);
    const seconds = Math.round((performance.now() - t0) / 1000);
    const report = JSON.parse(await readFile(reportFile, 'utf8')) as { numTotalTests: number; numFailedTests: number; numPassedTests: number };
    const parts: Part[] = [];
    for (const name of (await readdir(PARTS_DIR)).filter((n) => n.endsWith('.json'))) {
      const p = JSON.parse(await readFile(join(PARTS_DIR, name), 'utf8')) as Part;
      if (p.run === run) parts.push(p);
    }
    const need = ['faults', 'process-faults', 'processes', 'keychain', 'load'];
    const absent = need.filter((n) => !parts.some((p) => p.part === n));
    if (absent.length > 0) throw new Error(`the reliability suite wrote no counters for ${absent.join(', ')} in this run`);
    const t = tallyFaults(parts);
    if (t.named_twice.length > 0) throw new Error(`faults named by two test files: ${t.named_twice.join(', ')}`);
    const sum = (k: keyof Part): number => parts.reduce((n, p) => n + (typeof p[k] === 'number' ? (p[k] as number) : 0), 0);
    const scanned = parts.filter((p) => typeof p.secret_hits === 'number');
    if (scanned.length === 0) throw new Error('no secret scan ran in this run');
    const layers = Object.fromEntries(Object.entries(t.by_layer).map(([k, v]) => [k, v.survived]));
    return {
      'reliability.faults_survived': goal(t.faults_survived, 'count', '>=', 20, `distinct faults, each named once, after which the call answered its stable code in time, with one record for its request id, a verifying chain and no role or lease left (${t.faults_tried} tried${t.failed.length ? `; not survived: ${t.failed.join('; ')}` : ''})`),
      'reliability.process_faults_survived': goal(t.process_faults_survived, 'count', '>=', 10, `of those, faults on real processes, the network or the OS (SIGKILL, SIGSTOP, pg_ctl stop -m immediate, proxy resets, half-open, truncation, latency, the keychain daemon killed, the core killed between mint and revoke); ${t.process_faults_tried} tried`),
      'reliability.faults_by_layer': plain(layers, 'count', 'faults survived by where they happen: in-process (flags and stand-ins in the test process), process, network, os'),
      'reliability.lost_records': goal(sum('lost_records'), 'count', '<=', 0, `request ids sent with no audit record, compared id by id (${sum('calls')} calls under load at concurrency 32, and the calls around a core killed with SIGKILL)`),
      'reliability.duplicated_records': goal(sum('duplicated_records'), 'count', '<=', 0, 'request ids with more than one record'),
      'reliability.records_without_request': goal(sum('records_without_request'), 'count', '<=', 0, 'records whose request id was never sent'),
      'reliability.roles_left': goal(sum('leftover_roles'), 'count', '<=', 0, 'per-call PostgreSQL roles left after the faults and again after the fault lab\'s per-call TTL, and after the load run'),
      'reliability.leases_left': goal(sum('leftover_leases'), 'count', '<=', 0, 'Vault leases left at the same checks'),
      'reliability.planted_secrets_found': goal(sum('secret_hits'), 'count', '<=', 0, `planted secrets (${sum('secrets_planted')} tokens, OBOs, Vault tokens and passwords) found in ${sum('artifact_bytes_scanned')} bytes of logs, stores, exports and answers, in every encoding the scanner knows`),
      'reliability.bad_inputs_tried': plain(sum('bad_inputs_tried'), 'count', 'hostile inputs sent by the bounded property tests (a detail)'),
      'reliability.tests_failed': goal(report.numFailedTests, 'count', '<=', 0, `tests of test/reliability that failed in this run, of ${report.numTotalTests} (${seconds} s)`),
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
