/**
 * Shared pieces of the reliability suite: the broker lab (real PostgreSQL, IdP and Vault stand-in over
 * loopback, from test/core/broker/lab.ts) with a real AuditStore on disk instead of a capturing sink, so
 * "zero lost records" means records in the hash chain; the counters the suite reports; and the
 * long-mode switch.
 */
import { mkdir, mkdtemp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { startLab, type Lab } from '../../lab/index.ts';
import { createBroker, type Approver, type Broker } from '../../main/core/broker/index.ts';
import { AuditStore } from '../../main/core/audit/store.ts';
import { createPostgresConnector, type PostgresConnection } from '../../main/core/connectors/postgres/connector.ts';
import type { Connector, ToolCallRequest } from '../../main/core/connectors/types.ts';
import { createTokenExchanger, type TokenExchanger } from '../../main/core/idp/token-exchange.ts';
import { parsePolicy, type PostgresPolicy } from '../../main/core/policy/policy.ts';
import type { TokenSource } from '../../main/core/ports.ts';
import { createVaultClient, type VaultClient } from '../../main/core/vault/client.ts';
import { memorySecretStore } from '../core/audit/fixtures.ts';
import { decodeJwt, signIn } from '../lab/idp-fixtures.ts';

/** `RELIABILITY_LONG=1`: the longer local mode (10,000 calls, more fuzz runs). */
export const LONG = process.env.RELIABILITY_LONG === '1';

export const DEMO_POLICY_FILE = fileURLToPath(new URL('../../main/core/policy/demo-clinic.policy.jsonc', import.meta.url));
export const DEMO_POLICY = parsePolicy(readFileSync(DEMO_POLICY_FILE, 'utf8')).postgres as PostgresPolicy;

export const PASSWORDS = { alice: 'alice-lab-pw', bob: 'bob-lab-pw', admin: 'admin-lab-pw' } as const;

export interface SignedIn extends TokenSource {
  accessToken: string;
  refreshToken?: string;
  idToken?: string;
}

/** A TokenSource holding a real sign-in at the lab IdP (PKCE through its login page, over HTTP): the auth module's stand-in. */
export async function signedIn(lab: Lab, who: keyof typeof PASSWORDS = 'alice'): Promise<SignedIn> {
  const t = (await signIn(lab.idp, { username: who, password: PASSWORDS[who] })) as { access_token: string; refresh_token?: string; id_token?: string };
  const sub = String(decodeJwt(t.access_token).sub);
  return {
    accessToken: t.access_token,
    ...(t.refresh_token ? { refreshToken: t.refresh_token } : {}),
    ...(t.id_token ? { idToken: t.id_token } : {}),
    async getAccessToken(signal?: AbortSignal) {
      signal?.throwIfAborted();
      return t.access_token;
    },
    async stepUp() {},
    user: () => ({ sub }),
    dpopKeyPair: () => undefined,
  };
}

let nextRequestId = 1;
export function call(name: string, args: Record<string, unknown>, signal: AbortSignal = new AbortController().signal): ToolCallRequest {
  return { name, args, requestId: nextRequestId++, sessionId: 'reliability', client: { name: 'vitest', version: '1' }, signal, progress: () => {} };
}

export interface ReliabilityLab {
  lab: Lab;
  /** Lines the lab's parts logged (IdP, Vault stand-in, PostgreSQL lifecycle) and the broker's own. */
  logs: { lab: string[]; core: string[] };
  connection: PostgresConnection;
  exchanger: TokenExchanger;
  vaultClient: VaultClient;
  alice: SignedIn;
  audit: AuditStore;
  auditDir: string;
  /** A broker over the real parts writing to the on-disk audit store; any part can be replaced for a fault. */
  broker(o?: { tokens?: TokenSource; approver?: Approver; connectors?: Connector[]; idp?: TokenExchanger; vault?: VaultClient }): Broker;
  postgresConnector(o?: { statementTimeoutMs?: number; port?: number; connectTimeoutMs?: number }): Connector;
  admin<T extends pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Waits until Vault holds no lease and PostgreSQL no per-call (`v-…`) role; returns what is left. */
  settled(withinMs?: number): Promise<{ roles: string[]; leases: number }>;
  stop(): Promise<void>;
}

export async function startReliabilityLab(): Promise<ReliabilityLab> {
  const logs = { lab: [] as string[], core: [] as string[] };
  const lab = await startLab({ log: (l) => logs.lab.push(l) });
  const auditDir = await mkdtemp(join(tmpdir(), 'countersign-reliability-'));
  const adminPool = new pg.Pool({ connectionString: lab.postgresAdminUrl, max: 2 });
  adminPool.on('error', () => {});
  const vaultClient = createVaultClient({ address: lab.vaultAddr, timeoutMs: 15_000 });
  const stopAll = async () => {
    await adminPool.end().catch(() => {});
    await vaultClient.close().catch(() => {});
    await lab.stop();
    await rm(auditDir, { recursive: true, force: true });
  };
  let audit: AuditStore;
  let alice: SignedIn;
  try {
    audit = await AuditStore.open({ dataDir: auditDir, secrets: memorySecretStore() });
    alice = await signedIn(lab, 'alice');
  } catch (error) {
    await stopAll();
    throw error;
  }
  const connection: PostgresConnection = { host: lab.pg.host, port: lab.pg.port, database: lab.pg.database };
  // Generous time-outs: 32 concurrent calls on a busy 2-core machine can take seconds per hop.
  const exchanger = createTokenExchanger({ issuer: lab.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true, timeoutMs: 15_000 });
  const postgresConnector: ReliabilityLab['postgresConnector'] = (o = {}) =>
    createPostgresConnector({
      policy: o.statementTimeoutMs ? { ...DEMO_POLICY, limits: { ...DEMO_POLICY.limits, statementTimeoutMs: o.statementTimeoutMs } } : DEMO_POLICY,
      connection: { ...connection, ...(o.port ? { port: o.port } : {}), ...(o.connectTimeoutMs ? { connectTimeoutMs: o.connectTimeoutMs } : {}) },
    });
  const admin = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await adminPool.query<T>(sql, params)).rows;
  return {
    lab,
    logs,
    connection,
    exchanger,
    vaultClient,
    alice,
    audit,
    auditDir,
    postgresConnector,
    admin,
    broker(o = {}) {
      return createBroker({
        connectors: o.connectors ?? [postgresConnector()],
        tokens: o.tokens ?? alice,
        idp: o.idp ?? exchanger,
        vault: o.vault ?? vaultClient,
        audit,
        ...(o.approver ? { approver: o.approver } : {}),
        log: (l) => logs.core.push(l),
        demo: true,
      });
    },
    async settled(withinMs = 3_000) {
      const deadline = Date.now() + withinMs;
      for (;;) {
        const roles = (await admin<{ rolname: string }>("SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-%'")).map((x) => x.rolname);
        const leases = lab.vault.leases();
        if ((roles.length === 0 && leases === 0) || Date.now() > deadline) return { roles, leases };
        await new Promise((res) => setTimeout(res, 50));
      }
    },
    async stop() {
      await audit.close().catch(() => {});
      await stopAll();
    },
  };
}

export interface ReliabilityCounters {
  bad_inputs_tried: number;
  lost_records: number;
  calls: number;
}

/**
 * Where a fault happens: a flag or a stand-in inside this process (`in-process`), a real process
 * signalled or stopped (`process`), the network between (`network`), or the operating system (`os`:
 * a full disk).
 */
export type FaultLayer = 'in-process' | 'process' | 'network' | 'os';

/** One fault, by its name: counted once however many calls it took. */
export interface FaultOutcome {
  name: string;
  layer: FaultLayer;
  survived: boolean;
}

/** Tracks the faults of one test file: `run(name, layer, body)` counts the fault survived only when the body finishes. */
export function faultLedger(): { run(name: string, layer: FaultLayer, body: () => Promise<void>): Promise<void>; outcomes(): FaultOutcome[] } {
  const seen = new Map<string, FaultOutcome>();
  return {
    async run(name, layer, body) {
      const prior = seen.get(name);
      if (prior && prior.layer !== layer) throw new Error(`fault "${name}" named with two layers`);
      const entry = prior ?? { name, layer, survived: true };
      seen.set(name, entry);
      try {
        await body();
      } catch (error) {
        entry.survived = false;
        throw error;
      }
    },
    outcomes: () => [...seen.values()],
  };
}

/** Distinct faults over every part of a run: a name reported by two parts is an error of the suite, not two faults. */
export function tallyFaults(parts: ReadonlyArray<{ part?: unknown; faults?: FaultOutcome[] }>): {
  faults_tried: number;
  faults_survived: number;
  process_faults_tried: number;
  process_faults_survived: number;
  by_layer: Record<FaultLayer, { tried: number; survived: number }>;
  failed: string[];
  named_twice: string[];
} {
  const byName = new Map<string, FaultOutcome & { part: string }>();
  const namedTwice: string[] = [];
  for (const p of parts) {
    for (const f of p.faults ?? []) {
      const prior = byName.get(f.name);
      if (prior && prior.part !== String(p.part)) namedTwice.push(f.name);
      else byName.set(f.name, { ...f, part: String(p.part) });
    }
  }
  const all = [...byName.values()];
  const layers: FaultLayer[] = ['in-process', 'process', 'network', 'os'];
  const by_layer = Object.fromEntries(layers.map((l) => [l, { tried: all.filter((f) => f.layer === l).length, survived: all.filter((f) => f.layer === l && f.survived).length }])) as Record<FaultLayer, { tried: number; survived: number }>;
  const outside = all.filter((f) => f.layer !== 'in-process');
  return {
    faults_tried: all.length,
    faults_survived: all.filter((f) => f.survived).length,
    process_faults_tried: outside.length,
    process_faults_survived: outside.filter((f) => f.survived).length,
    by_layer,
    failed: all.filter((f) => !f.survived).map((f) => f.name),
    named_twice: namedTwice,
  };
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const RESULTS_FILE = join(ROOT, 'test-results', 'reliability.json');
const PARTS_DIR = join(ROOT, 'test-results', 'reliability');

/**
 * Each test file writes its own part (files run in parallel workers), then the sum of this run's parts
 * is written to test-results/reliability.json atomically, so whichever file finishes last leaves the total.
 */
export async function reportCounters(part: string, counters: Partial<ReliabilityCounters> & { faults?: FaultOutcome[] }, extra: Record<string, unknown> = {}): Promise<void> {
  await mkdir(PARTS_DIR, { recursive: true });
  // Workers of one vitest run share its process as their parent: only this run's parts are summed.
  // `npm run bench` names its run (RELIABILITY_RUN) and reads back only what that run wrote.
  const run = process.env.RELIABILITY_RUN ?? process.ppid;
  const line = { part, run, at: new Date().toISOString(), long: LONG, ...counters, ...extra };
  await writeFile(join(PARTS_DIR, `${part}.json`), JSON.stringify(line, null, 2));
  const parts: Array<Record<string, unknown>> = [];
  for (const f of (await readdir(PARTS_DIR)).filter((n) => n.endsWith('.json')).sort()) {
    try {
      const p = JSON.parse(await readFile(join(PARTS_DIR, f), 'utf8')) as Record<string, unknown>;
      if (p.run === run) parts.push(p);
    } catch {
      // a part being written right now; the file that writes it sums again
    }
  }
  const sum = (k: keyof ReliabilityCounters) => parts.reduce((n, p) => n + (typeof p[k] === 'number' ? (p[k] as number) : 0), 0);
  const total = {
    ...tallyFaults(parts as Array<{ part?: unknown; faults?: FaultOutcome[] }>),
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
