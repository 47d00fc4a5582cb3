/**
 * Per-call broker benchmark against the lab. Every number comes from fixed timing points in the code:
 * the broker's hop timings in its audit record (performance.now() around each hop) and the wall time
 * around `callTool`.
 * - call_tier1_total: an end-to-end tier-1 `query` (exchange, Vault login, credential, statement,
 *   revoke-self and the role-gone check included);
 * - call_tier1_hops: each external hop (db = the statement, revoke = revoke-self + role-gone check);
 * - own_overhead: total minus those hops (validation, classification, planning, audit, glue);
 * - hops_alone_total: the same hops run back to back by hand, no broker, in the same run;
 * - throughput at concurrency 1, 8 and 32.
 *
 * Run alone: `node bench/broker.bench.ts` (starts the lab, prints JSON).
 */
import { performance } from 'node:perf_hooks';
import type { Lab } from '../lab/index.ts';
import type { AuditRecord, AuditRecordInput } from '../common/audit-record.ts';
import { createBroker } from '../main/core/broker/index.ts';
import { createPostgresConnector, roleStillLogsIn, runStatement } from '../main/core/connectors/postgres/connector.ts';
import { planPostgresCall } from '../main/core/connectors/postgres/plan.ts';
import { createTokenExchanger } from '../main/core/idp/token-exchange.ts';
import { parsePolicy, type PostgresPolicy } from '../main/core/policy/policy.ts';
import { createVaultClient } from '../main/core/vault/client.ts';
import type { AuditSink, TokenSource } from '../main/core/ports.ts';
import type { ToolCallRequest } from '../main/core/connectors/types.ts';
import { readFileSync } from 'node:fs';
import { signIn, decodeJwt } from '../test/lab/idp-fixtures.ts';
import { goal, plain, ratioOf, type BenchContext, type Figures } from './figures.ts';

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
}

export interface BrokerBenchResult {
  samples: number;
  call_tier1_total: Percentiles;
  call_tier1_hops: { exchange: Percentiles; vault_login: Percentiles; vault_creds: Percentiles; db: Percentiles; revoke: Percentiles };
  own_overhead: Percentiles;
  own_overhead_share: { p50: number; p99: number };
  hops_alone_total: Percentiles;
  total_vs_hops_alone_p50: number;
  throughput_calls_per_s: { c1: number; c8: number; c32: number };
}

export function percentiles(samples: number[]): Percentiles {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => round(s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN);
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

const SQL = 'SELECT id, full_name FROM patients ORDER BY id LIMIT 5';

export async function benchBroker(lab: Lab, o: { samples?: number } = {}): Promise<BrokerBenchResult> {
  const samples = o.samples ?? 200;
  const policy = parsePolicy(readFileSync(new URL('../main/core/policy/demo-clinic.policy.jsonc', import.meta.url), 'utf8')).postgres as PostgresPolicy;
  const connection = { host: lab.pg.host, port: lab.pg.port, database: lab.pg.database };
  const tokens = await signIn(lab.idp, { username: 'alice', password: 'alice-lab-pw' });
  const accessToken = tokens.access_token as string;
  const sub = String(decodeJwt(accessToken).sub);
  const source: TokenSource = {
    getAccessToken: async () => accessToken,
    stepUp: async () => {},
    user: () => ({ sub }),
    dpopKeyPair: () => undefined,
  };
  const idp = createTokenExchanger({ issuer: lab.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true });
  const vault = createVaultClient({ address: lab.vaultAddr });
  const records: AuditRecordInput[] = [];
  const audit: AuditSink = {
    async append(r) {
      records.push(r);
      return r as AuditRecord;
    },
  };
  const broker = createBroker({ connectors: [createPostgresConnector({ policy, connection })], tokens: source, idp, vault, audit });
  let id = 0;
  const req = (): ToolCallRequest => ({
    name: 'query',
    args: { sql: SQL },
    requestId: ++id,
    sessionId: 'bench',
    client: { name: 'bench' },
    signal: new AbortController().signal,
    progress: () => {},
  });

  const oneCall = async (): Promise<{ total: number; record: AuditRecordInput }> => {
    const start = performance.now();
    const r = await broker.callTool(req());
    const total = performance.now() - start;
    if (r.isError) throw new Error(`bench call failed: ${JSON.stringify(r.content)}`);
    return { total, record: records[records.length - 1]! };
  };

  /** The same hops by hand: no validation, classification, approval port, audit or glue. */
  const { plan, details } = await planPostgresCall(policy, 'query', { sql: SQL });
  const hopsAlone = async (): Promise<number> => {
    const start = performance.now();
    const obo = await idp.exchange({ subjectToken: await source.getAccessToken(), authorizationDetails: plan.authorizationDetails, audience: plan.audience });
    const login = await vault.loginJwt('jwt', obo.vaultRole, obo.token);
    const creds = await vault.databaseCreds(login.token, 'database', obo.vaultRole);
    await runStatement(connection, creds.username, creds.password, obo.jti, details, new AbortController().signal);
    await vault.revokeSelf(login.token);
    for (let i = 0; i < 40 && (await roleStillLogsIn(connection, creds.username, creds.password, AbortSignal.timeout(5_000))) !== 'gone'; i += 1) {
      await new Promise((r) => setTimeout(r, Math.min(50 * (i + 1), 250)));
    }
    return performance.now() - start;
  };

  for (let i = 0; i < 20; i += 1) {
    await oneCall();
    await hopsAlone();
  }
  records.length = 0;

  const totals: number[] = [];
  const alone: number[] = [];
  const hop = { exchange: [] as number[], vault_login: [] as number[], vault_creds: [] as number[], db: [] as number[], revoke: [] as number[] };
  const overhead: number[] = [];
  const share: number[] = [];
  for (let i = 0; i < samples; i += 1) {
    // Interleaved so both see the same machine state.
    const { total, record } = await oneCall();
    alone.push(await hopsAlone());
    const ms = (name: string): number => (record.hops ?? []).filter((h) => h.name === name).reduce((a, h) => a + h.ms, 0);
    const h = {
      exchange: ms('exchange'),
      vault_login: ms('vault_login'),
      vault_creds: ms('vault_creds'),
      db: ms('execute'),
      revoke: ms('revoke') + ms('revoke_check'),
    };
    for (const k of Object.keys(hop) as Array<keyof typeof hop>) hop[k].push(h[k]);
    const own = Math.max(0, total - (h.exchange + h.vault_login + h.vault_creds + h.db + h.revoke));
    totals.push(total);
    overhead.push(own);
    share.push(own / total);
  }

  const throughput = async (concurrency: number): Promise<number> => {
    const calls = Math.max(64, concurrency * 8);
    let next = 0;
    const start = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < calls) {
          next += 1;
          await oneCall();
        }
      }),
    );
    return round(calls / ((performance.now() - start) / 1000));
  };
  const c1 = await throughput(1);
  const c8 = await throughput(8);
  const c32 = await throughput(32);
  await vault.close();
  await broker.close();

  const totalP = percentiles(totals);
  const aloneP = percentiles(alone);
  const shareP = percentiles(share);
  return {
    samples,
    call_tier1_total: totalP,
    call_tier1_hops: {
      exchange: percentiles(hop.exchange),
      vault_login: percentiles(hop.vault_login),
      vault_creds: percentiles(hop.vault_creds),
      db: percentiles(hop.db),
      revoke: percentiles(hop.revoke),
    },
    own_overhead: percentiles(overhead),
    own_overhead_share: { p50: shareP.p50, p99: shareP.p99 },
    hops_alone_total: aloneP,
    total_vs_hops_alone_p50: round(totalP.p50 / aloneP.p50),
    throughput_calls_per_s: { c1, c8, c32 },
  };
}

/** The broker's figures for bench/run.ts. */
export async function bench(ctx: BenchContext): Promise<Figures> {
  const r = await benchBroker(await ctx.lab());
  return {
    call_tier1_total: plain(r.call_tier1_total, 'ms', 'a tier-1 query end to end through the broker'),
    own_overhead: plain(r.own_overhead, 'ms', 'the total minus the hops'),
    own_overhead_share_p50: goal(r.own_overhead_share.p50, 'share', '<=', 0.05, "Countersign's own time as a share of a tier-1 call (p50)"),
    own_overhead_share_p99: goal(r.own_overhead_share.p99, 'share', '<=', 0.05, "Countersign's own time as a share of a tier-1 call (p99)"),
    hops_alone_total: plain(r.hops_alone_total, 'ms', 'the same hops run back to back by hand, no broker (baseline)'),
    total_vs_hops_alone: goal(ratioOf(r.call_tier1_total.p50, r.hops_alone_total.p50), 'ratio', '<=', 1.1, 'a tier-1 call through the broker over the same hops alone (p50)'),
    throughput_calls_per_s: plain(r.throughput_calls_per_s, 'per_s', 'completed tier-1 calls per second at concurrency 1, 8 and 32'),
  };
}

if (import.meta.filename === process.argv[1]) {
  const { startLab } = await import('../lab/index.ts');
  const lab = await startLab();
  try {
    console.log(JSON.stringify(await benchBroker(lab), null, 2));
  } finally {
    await lab.stop();
  }
}
