/**
 * Shared pieces of the reliability suite: the broker lab (real PostgreSQL, IdP and Vault stand-in over
 * loopback, from test/core/broker/lab.ts) with a real AuditStore on disk instead of a capturing sink, so
 * "zero lost records" means records in the hash chain; the counters the suite reports; and the
 * long-mode switch.
 */
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createBroker, type Approver, type Broker } from '../../main/core/broker/index.ts';
import { AuditStore } from '../../main/core/audit/store.ts';
import { createPostgresConnector } from '../../main/core/connectors/postgres/connector.ts';
import type { Connector } from '../../main/core/connectors/types.ts';
import type { TokenExchanger } from '../../main/core/idp/token-exchange.ts';
import type { TokenSource } from '../../main/core/ports.ts';
import type { VaultClient } from '../../main/core/vault/client.ts';
import { memorySecretStore } from '../core/audit/fixtures.ts';
import { DEMO_POLICY, startBrokerLab, type BrokerLab } from '../core/broker/lab.ts';

/** `RELIABILITY_LONG=1`: the longer local mode (10,000 calls, more fuzz runs). */
export const LONG = process.env.RELIABILITY_LONG === '1';

export interface ReliabilityLab {
  lab: BrokerLab;
  audit: AuditStore;
  auditDir: string;
  /** A broker over the real parts writing to the on-disk audit store; any part can be replaced for a fault. */
  broker(o?: { tokens?: TokenSource; approver?: Approver; connectors?: Connector[]; idp?: TokenExchanger; vault?: VaultClient }): Broker;
  postgresConnector(o?: { statementTimeoutMs?: number; port?: number; connectTimeoutMs?: number }): Connector;
  stop(): Promise<void>;
}

export async function startReliabilityLab(): Promise<ReliabilityLab> {
  const lab = await startBrokerLab();
  const auditDir = await mkdtemp(join(tmpdir(), 'countersign-reliability-'));
  let audit: AuditStore;
  try {
    audit = await AuditStore.open({ dataDir: auditDir, secrets: memorySecretStore() });
  } catch (error) {
    await lab.stop();
    await rm(auditDir, { recursive: true, force: true });
    throw error;
  }
  const postgresConnector: ReliabilityLab['postgresConnector'] = (o = {}) =>
    createPostgresConnector({
      policy: o.statementTimeoutMs ? { ...DEMO_POLICY, limits: { ...DEMO_POLICY.limits, statementTimeoutMs: o.statementTimeoutMs } } : DEMO_POLICY,
      connection: { ...lab.connection, ...(o.port ? { port: o.port } : {}), ...(o.connectTimeoutMs ? { connectTimeoutMs: o.connectTimeoutMs } : {}) },
    });
  return {
    lab,
    audit,
    auditDir,
    postgresConnector,
    broker(o = {}) {
      return createBroker({
        connectors: o.connectors ?? [postgresConnector()],
        tokens: o.tokens ?? lab.alice,
        idp: o.idp ?? lab.exchanger,
        vault: o.vault ?? lab.vaultClient,
        audit,
        ...(o.approver ? { approver: o.approver } : {}),
        log: (l) => lab.logs.core.push(l),
        demo: true,
      });
    },
    async stop() {
      await audit.close().catch(() => {});
      await lab.stop();
      await rm(auditDir, { recursive: true, force: true });
    },
  };
}

export interface ReliabilityCounters {
  faults_survived: number;
  faults_tried: number;
  bad_inputs_tried: number;
  lost_records: number;
  calls: number;
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const RESULTS_FILE = join(ROOT, 'test-results', 'reliability.json');
const PARTS_DIR = join(ROOT, 'test-results', 'reliability');

/**
 * Each test file writes its own part (files run in parallel workers), then the sum of every part is
 * written to test-results/reliability.json atomically, so whichever file finishes last leaves the total.
 */
export async function reportCounters(part: string, counters: Partial<ReliabilityCounters>, extra: Record<string, unknown> = {}): Promise<void> {
  await mkdir(PARTS_DIR, { recursive: true });
  const line = { part, at: new Date().toISOString(), long: LONG, ...counters, ...extra };
  await writeFile(join(PARTS_DIR, `${part}.json`), JSON.stringify(line, null, 2));
  const parts: Array<Record<string, unknown>> = [];
  for (const f of (await readdir(PARTS_DIR)).filter((n) => n.endsWith('.json')).sort()) {
    try {
      parts.push(JSON.parse(await readFile(join(PARTS_DIR, f), 'utf8')) as Record<string, unknown>);
    } catch {
      // a part being written right now; the file that writes it sums again
    }
  }
  const sum = (k: keyof ReliabilityCounters) => parts.reduce((n, p) => n + (typeof p[k] === 'number' ? (p[k] as number) : 0), 0);
  const total = {
    faults_survived: sum('faults_survived'),
    faults_tried: sum('faults_tried'),
    bad_inputs_tried: sum('bad_inputs_tried'),
    lost_records: sum('lost_records'),
    calls: sum('calls'),
    parts,
  };
  const tmp = `${RESULTS_FILE}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(total, null, 2));
  await rename(tmp, RESULTS_FILE);
  process.stdout.write(`reliability ${part}: ${JSON.stringify(counters)}\n`);
}

/** Heap in use after a full collection (exposes gc for this worker when it is not exposed already). */
export async function heapAfterGc(): Promise<number> {
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  for (let i = 0; i < 3; i += 1) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().heapUsed;
}

/** Runs `total` tasks with at most `concurrency` in flight. */
export async function pool<T>(total: number, concurrency: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array<T>(total);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < total; i = next++) out[i] = await task(i);
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, total) }, worker));
  return out;
}
