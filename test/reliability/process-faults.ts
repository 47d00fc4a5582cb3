/**
 * Faults on real processes and on the network, run the same way by the test suite
 * (process-faults.test.ts) and by `npm run bench` (bench/reliability.bench.ts): the lab's parts each in
 * a process of their own behind fault proxies (lab/parts.ts), the broker in this process writing to an
 * on-disk audit store.
 *
 * The contract for every fault: the call answers within its time-out with the fault's stable error
 * code; its request id has exactly one record; the chain verifies; no per-call PostgreSQL role or Vault
 * lease is left once the fault clears; the next call succeeds. Once all faults have run, the suite
 * waits out the per-call TTL and checks again that nothing was left.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { startProcessLab, type ProcessLab } from '../../lab/parts.ts';
import { AuditStore } from '../../main/core/audit/store.ts';
import { createBroker, type Broker } from '../../main/core/broker/index.ts';
import { createPostgresConnector } from '../../main/core/connectors/postgres/connector.ts';
import { createTokenExchanger, type TokenExchanger } from '../../main/core/idp/token-exchange.ts';
import type { TokenSource } from '../../main/core/ports.ts';
import { createVaultClient, type VaultClient } from '../../main/core/vault/client.ts';
import { memorySecretStore } from '../core/audit/fixtures.ts';
import type { LabIdp } from '../../lab/idp/index.ts';
import { decodeJwt, signIn } from '../lab/idp-fixtures.ts';
import { DEMO_POLICY, type FaultLayer } from './harness.ts';

/** Per-call TTL of the fault lab's Vault roles and tokens: what is orphaned must be gone after it. */
export const FAULT_LAB_TTL_S = 20;
/** The broker's time-outs toward each part: a fault shows within these. */
export const TIMEOUTS = { idpMs: 1_500, vaultMs: 1_500, pgConnectMs: 1_500, statementMs: 2_000, revokeCheckMs: 1_000 } as const;
/**
 * A fault between Countersign and PostgreSQL also stops the check that the role is gone (it tries
 * the role's login): connect, then checks until the check's deadline, each one up to a connect time-out.
 */
const PG_FAULT_MS = TIMEOUTS.pgConnectMs + TIMEOUTS.revokeCheckMs + TIMEOUTS.pgConnectMs;
/** Slack over a time-out for the answer to be built, recorded and delivered on a loaded 2-core machine. */
const ANSWER_SLACK_MS = 3_000;


export interface ProcessFault {
  /** Unique across the whole reliability catalogue. */
  name: string;
  layer: FaultLayer;
  /** The code the call must answer with. */
  code: string;
  /** The longest the call may take under the fault. */
  answerWithinMs: number;
  arm(f: FaultRun): Promise<void>;
  clear(f: FaultRun): Promise<void>;
}

export interface FaultRun {
  lab: ProcessLab;
  audit: AuditStore;
  broker: Broker;
  /** Every per-call secret the broker was handed (OBOs, Vault tokens, database passwords), for the scan. */
  planted: Map<string, string>;
  admin<T extends pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<T[]>;
  /** Roles and leases left, after waiting up to `withinMs` for them to go. */
  leftovers(withinMs: number): Promise<{ roles: string[]; leases: string[] }>;
  /** Request ids sent to the broker, in order. */
  sent: Array<string | number>;
  call(requestId: string): Promise<CallToolResult>;
  /** The lab's lifecycle lines and everything the IdP and Vault processes wrote to stderr. */
  logs(): string[];
  /** The broker's log lines. */
  coreLog: string[];
  /** The audit store's directory. */
  auditDir: string;
  stop(): Promise<void>;
}

const text = (res: CallToolResult): string => res.content.map((c) => (c as { text?: string }).text ?? '').join('\n');

/** The exchanger and Vault client the broker uses, each secret they hand over kept for the scan. */
function tapped(exchanger: TokenExchanger, vault: VaultClient, planted: Map<string, string>): { exchanger: TokenExchanger; vault: VaultClient } {
  const keep = (kind: string, value: string): void => void planted.set(`${kind}_${planted.size + 1}`, value);
  return {
    exchanger: {
      async exchange(request) {
        const obo = await exchanger.exchange(request);
        keep('obo', obo.token);
        return obo;
      },
    },
    vault: {
      ...vault,
      loginJwt: async (...a) => {
        const login = await vault.loginJwt(...a);
        keep('vault_token', login.token);
        return login;
      },
      databaseCreds: async (...a) => {
        const creds = await vault.databaseCreds(...a);
        keep('db_password', creds.password);
        return creds;
      },
    },
  };
}

export async function startFaultRun(): Promise<FaultRun> {
  const labLog: string[] = [];
  const coreLog: string[] = [];
  const log = (l: string): void => void coreLog.push(l);
  const lab = await startProcessLab({ ttl: FAULT_LAB_TTL_S, log: (l) => labLog.push(l) });
  const dir = await mkdtemp(join(tmpdir(), 'countersign-process-faults-'));
  const adminPool = new pg.Pool({ connectionString: lab.pg.adminUrl, max: 2, connectionTimeoutMillis: 3_000 });
  adminPool.on('error', () => {});
  const vaultClient = createVaultClient({ address: lab.vaultAddr, timeoutMs: TIMEOUTS.vaultMs });
  const planted = new Map<string, string>();
  const stop = async (): Promise<void> => {
    await adminPool.end().catch(() => {});
    await vaultClient.close().catch(() => {});
    await lab.stop();
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const auditDir = join(dir, 'audit');
    const audit = await AuditStore.open({ dataDir: auditDir, secrets: memorySecretStore() });
    // The sign-in needs only the IdP's addresses, which a part in another process has too.
    const idpAddresses = { issuer: lab.issuer, nativeClientId: 'countersign-desktop', tokenEndpoint: `${lab.issuer}/token` } as LabIdp;
    const t = (await signIn(idpAddresses, { username: 'alice', password: 'alice-lab-pw' })) as { access_token: string; refresh_token?: string; id_token?: string };
    planted.set('user_access_token', t.access_token);
    if (t.refresh_token) planted.set('user_refresh_token', t.refresh_token);
    planted.set('vault_root_token', lab.vaultToken);
    planted.set('vault_unseal_key', lab.vaultUnsealKey);
    planted.set('pg_management_password', lab.pg.managementPassword);
    planted.set('pg_admin_password', decodeURIComponent(new URL(lab.pg.adminUrl).password));
    const sub = String(decodeJwt(t.access_token).sub);
    const tokens: TokenSource = {
      async getAccessToken(signal?: AbortSignal) {
        signal?.throwIfAborted();
        return t.access_token;
      },
      async stepUp() {},
      user: () => ({ sub }),
      dpopKeyPair: () => undefined,
    };
    const exchanger = createTokenExchanger({ issuer: lab.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true, timeoutMs: TIMEOUTS.idpMs });
    const parts = tapped(exchanger, vaultClient, planted);
    const connector = createPostgresConnector({
      policy: { ...DEMO_POLICY, limits: { ...DEMO_POLICY.limits, statementTimeoutMs: TIMEOUTS.statementMs } },
      connection: { ...lab.postgres, connectTimeoutMs: TIMEOUTS.pgConnectMs },
    });
    const broker = createBroker({ connectors: [connector], tokens, idp: parts.exchanger, vault: parts.vault, audit, log, demo: true, revoke: { checkWithinMs: TIMEOUTS.revokeCheckMs } });
    const admin = async <T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) => (await adminPool.query<T>(sql, params)).rows;
    const sent: Array<string | number> = [];
    return {
      lab,
      audit,
      broker,
      planted,
      admin,
      sent,
      call(requestId) {
        sent.push(requestId);
        return broker.callTool({
          name: 'query',
          args: { sql: 'SELECT id, full_name FROM patients ORDER BY id' },
          requestId,
          sessionId: 'process-faults',
          client: { name: 'reliability', version: '1' },
          signal: new AbortController().signal,
          progress: () => {},
        });
      },
      async leftovers(withinMs) {
        const deadline = Date.now() + withinMs;
        for (;;) {
          const roles = (await admin<{ rolname: string }>("SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-%'")).map((x) => x.rolname);
          const leases = await lab.leases();
          if ((roles.length === 0 && leases.length === 0) || Date.now() > deadline) return { roles, leases };
          await new Promise((r) => setTimeout(r, 100));
        }
      },
      async stop() {
        await audit.close().catch(() => {});
        await stop();
      },
      logs: () => [...labLog, ...lab.idp.log, ...lab.vault.log],
      coreLog,
      auditDir,
    };
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Every record whose MCP request id is `id`. */
export function recordsFor(audit: AuditStore, id: string | number): number {
  return requestIdCounts(audit).get(id) ?? 0;
}

/** How many records each request id has, over the whole store (paged, newest first). */
export function requestIdCounts(audit: AuditStore): Map<string | number, number> {
  const counts = new Map<string | number, number>();
  let before: number | null | undefined;
  for (;;) {
    const page = audit.page({ limit: 500, ...(before ? { before } : {}) }, { withTotal: false });
    for (const rec of page.records) {
      if (rec.kind !== 'tool_call') continue;
      const id = rec.keys.mcp_request_id;
      if (id === undefined || id === null) continue;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    if (page.next_before === null || page.records.length === 0) return counts;
    before = page.next_before;
  }
}

/**
 * Compares request ids sent with the records' request ids, one by one: ids with no record (lost), ids
 * with more than one, and records whose id was never sent.
 */
export function compareIds(sent: ReadonlyArray<string | number>, counts: ReadonlyMap<string | number, number>): { lost: Array<string | number>; duplicated: Array<string | number>; unsent: Array<string | number> } {
  const wanted = new Set(sent);
  return {
    lost: [...wanted].filter((id) => !counts.has(id)),
    duplicated: [...counts].filter(([, n]) => n > 1).map(([id]) => id),
    unsent: [...counts.keys()].filter((id) => !wanted.has(id)),
  };
}

/** Runs one fault under the contract; throws (an AssertionError naming what broke) when any part fails. */
export async function runFault(f: FaultRun, fault: ProcessFault): Promise<{ ms: number }> {
  await fault.arm(f);
  const id = `${fault.name}#under`;
  const t0 = performance.now();
  let res: CallToolResult;
  let ms: number;
  try {
    res = await f.call(id);
    ms = Math.round(performance.now() - t0);
  } finally {
    await fault.clear(f);
  }
  assert.ok(ms <= fault.answerWithinMs, `${fault.name}: answered after ${ms} ms, more than ${fault.answerWithinMs} ms`);
  assert.equal(res.isError, true, `${fault.name}: the call succeeded under the fault: ${text(res)}`);
  const message = text(res);
  assert.ok(message.includes(`[${fault.code}]`), `${fault.name}: expected [${fault.code}], got: ${message}`);
  assert.ok(message.replace(`[${fault.code}]`, '').trim().length > 20, `${fault.name}: no sentence a person can act on: ${message}`);
  assert.doesNotMatch(message, /\bat .+\.(ts|js):\d+|ECONNREFUSED|ECONNRESET|TypeError|undefined/, `${fault.name}: raw library text in the answer`);
  assert.equal(recordsFor(f.audit, id), 1, `${fault.name}: expected exactly one record for ${id}`);
  const verify = await f.audit.verify();
  assert.ok(verify.ok, `${fault.name}: the chain does not verify: ${JSON.stringify(verify.firstBad)}`);
  // Revocations that failed while the part was down are retried by Vault with back-off.
  const left = await f.leftovers(15_000);
  assert.deepEqual(left, { roles: [], leases: [] }, `${fault.name}: left behind once the fault cleared`);
  const after = await f.call(`${fault.name}#after`);
  assert.equal(after.isError ?? false, false, `${fault.name}: the call after the fault cleared failed: ${text(after)}`);
  assert.equal(recordsFor(f.audit, `${fault.name}#after`), 1, `${fault.name}: expected exactly one record for the call after`);
  return { ms };
}

const within = (timeoutMs: number): number => timeoutMs + ANSWER_SLACK_MS;
type Step = (f: FaultRun) => Promise<void>;
const signal = (part: 'idp' | 'vault', sig: NodeJS.Signals): Step => async (f) => f.lab[part].signal(sig);
const pgSignal = (sig: NodeJS.Signals): Step => async (f) => void process.kill(f.lab.pg.pid()!, sig);

/** A fault of a process: how it is caused and undone, what the call must answer and how soon. */
const processFault = (name: string, code: string, timeoutMs: number, arm: Step, clear: Step): ProcessFault => ({
  name,
  layer: 'process',
  code,
  answerWithinMs: within(timeoutMs),
  arm,
  clear,
});

/** A fault on the wire to one part, set on the fault proxy in front of it and cleared there. */
const networkFault = (
  name: string,
  part: keyof ProcessLab['proxies'],
  fault: Parameters<ProcessLab['proxies']['idp']['setFault']>[0],
  code: string,
  timeoutMs: number,
): ProcessFault => ({
  name,
  layer: 'network',
  code,
  answerWithinMs: within(timeoutMs),
  arm: async (f) => f.lab.proxies[part].setFault(fault),
  clear: async (f) => f.lab.proxies[part].setFault(null),
});

/** The process and network faults, each named once. */
export const PROCESS_FAULTS: ProcessFault[] = [
  processFault('postgres killed with SIGKILL, restarted on the same port', 'VAULT_UNAVAILABLE', TIMEOUTS.vaultMs, pgSignal('SIGKILL'), (f) => f.lab.pg.restart()),
  processFault('postgres stopped with pg_ctl stop -m immediate, restarted', 'VAULT_UNAVAILABLE', TIMEOUTS.vaultMs, (f) => f.lab.pg.stopImmediate(), (f) => f.lab.pg.restart()),
  processFault('postgres postmaster stopped with SIGSTOP, resumed with SIGCONT', 'DB_UNAVAILABLE', PG_FAULT_MS, pgSignal('SIGSTOP'), pgSignal('SIGCONT')),
  processFault('identity provider killed with SIGKILL, restarted on the same port', 'IDP_UNAVAILABLE', TIMEOUTS.idpMs, (f) => f.lab.idp.kill(), (f) => f.lab.idp.restart()),
  processFault('identity provider stopped with SIGSTOP, resumed with SIGCONT', 'IDP_UNAVAILABLE', TIMEOUTS.idpMs, signal('idp', 'SIGSTOP'), signal('idp', 'SIGCONT')),
  processFault('Vault stopped with SIGSTOP, resumed with SIGCONT', 'VAULT_UNAVAILABLE', TIMEOUTS.vaultMs, signal('vault', 'SIGSTOP'), signal('vault', 'SIGCONT')),
  networkFault('network to the identity provider reset on connect', 'idp', { kind: 'reset' }, 'IDP_UNAVAILABLE', TIMEOUTS.idpMs),
  networkFault('network to the identity provider half-open (the answer never comes, no FIN)', 'idp', { kind: 'half-open' }, 'IDP_UNAVAILABLE', TIMEOUTS.idpMs),
  networkFault('network to Vault reset in the middle of a response', 'vault', { kind: 'reset-mid-response', afterBytes: 40 }, 'VAULT_UNAVAILABLE', TIMEOUTS.vaultMs),
  networkFault('network to Vault truncates the HTTP response', 'vault', { kind: 'truncate', afterBytes: 120 }, 'VAULT_UNAVAILABLE', TIMEOUTS.vaultMs),
  networkFault('network to PostgreSQL slower than the connect time-out', 'postgres', { kind: 'latency', ms: TIMEOUTS.pgConnectMs * 2 }, 'DB_UNAVAILABLE', PG_FAULT_MS),
  networkFault('network to PostgreSQL hangs (connection accepted, nothing answered)', 'postgres', { kind: 'hang' }, 'DB_UNAVAILABLE', PG_FAULT_MS),
];
