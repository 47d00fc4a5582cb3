/**
 * The lab (startLab: PostgreSQL with the clinic, the IdP, the Vault stand-in configured as an
 * administrator would, the upstreams), started once per test file, and the core pieces pointed at it.
 * Everything is real and talks over loopback sockets; `stop()` leaves no process, port, directory or
 * role behind.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { startLab } from '../../../lab/index.ts';
import type { LabPostgres } from '../../../lab/postgres.ts';
import type { LabIdp } from '../../../lab/idp/index.ts';
import type { LabVault } from '../../../lab/vault/index.ts';
import type { Upstream } from '../../../lab/upstream/index.ts';
import { createBroker, createCredentials, type Approver, type Broker, type Credentials } from '../../../main/core/broker/index.ts';
import { createPostgresConnector, type PostgresConnection } from '../../../main/core/connectors/postgres/connector.ts';
import { createTokenExchanger, type TokenExchanger } from '../../../main/core/idp/token-exchange.ts';
import { parsePolicy, type PostgresPolicy } from '../../../main/core/policy/policy.ts';
import { createVaultClient, type VaultClient } from '../../../main/core/vault/client.ts';
import type { VaultMode } from '../../../main/core/vault/agent-mode.ts';
import type { Connector, ToolCallRequest } from '../../../main/core/connectors/types.ts';
import type { TokenSource } from '../../../main/core/ports.ts';
import { labTokenSource, MemoryAudit } from './fixtures.ts';

export const DEMO_POLICY = parsePolicy(
  readFileSync(new URL('../../../main/core/policy/demo-clinic.policy.jsonc', import.meta.url), 'utf8'),
).postgres as PostgresPolicy;

export interface BrokerLab {
  pg: LabPostgres;
  idp: LabIdp;
  vault: LabVault;
  /** The lab's upstream MCP servers: identity-protected (`url`) and API-key (`apiKeyUrl`, key seeded in Vault KV). */
  upstream: Upstream;
  connection: PostgresConnection;
  exchanger: TokenExchanger;
  vaultClient: VaultClient;
  alice: TokenSource & { accessToken: string; calls: number };
  /** The lab's own log (IdP, Vault, PostgreSQL lifecycle) and the core's. */
  logs: { lab: string[]; core: string[] };
  vaultAuditLogPath: string;
  /** A broker over the real parts; every argument can be replaced for a fault test. */
  broker(o?: CoreParts & { approver?: Approver; connectors?: Connector[]; credentials?: Credentials; answer?: 'after-record' | 'on-result' }): {
    broker: Broker;
    audit: MemoryAudit;
  };
  /** The credential source alone (for connectors built before their broker), over the same parts. */
  credentials(o?: CoreParts): { credentials: Credentials; audit: MemoryAudit };
  /** Per-call roles (Vault's `v-…` names) still present in PostgreSQL. */
  leftoverRoles(): Promise<string[]>;
  admin<T extends pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<T[]>;
  stop(): Promise<void>;
}

/** The parts a broker or a credential source is built from; each defaults to the lab's. */
interface CoreParts {
  tokens?: TokenSource;
  idp?: TokenExchanger;
  vault?: VaultClient;
  audit?: MemoryAudit;
  vaultMode?: VaultMode;
}

let nextRequestId = 1;
export function call(name: string, args: Record<string, unknown>, o: { signal?: AbortSignal; progress?: (m: string) => void } = {}): ToolCallRequest {
  return {
    name,
    args,
    requestId: nextRequestId++,
    sessionId: 'test-session',
    client: { name: 'vitest', version: '1' },
    signal: o.signal ?? new AbortController().signal,
    progress: o.progress ?? (() => {}),
  };
}

export async function startBrokerLab(): Promise<BrokerLab> {
  const logs = { lab: [] as string[], core: [] as string[] };
  const lab = await startLab({ log: (l) => logs.lab.push(l) });
  const { pg: pgLab, idp, vault } = lab;
  try {
    const connection: PostgresConnection = { host: pgLab.host, port: pgLab.port, database: pgLab.database };
    const exchanger = createTokenExchanger({
      issuer: idp.issuer,
      clientId: 'countersign-desktop',
      allowInsecureHttpForLoopbackOnly: true,
      // Generous: 32 concurrent exchanges on a busy 2-core machine can take seconds.
      timeoutMs: 15_000,
      stepUp: { pollIntervalMs: 50, timeoutMs: 5_000 },
    });
    const vaultClient = createVaultClient({ address: vault.addr, timeoutMs: 15_000 });
    const alice = await labTokenSource(idp, 'alice');
    const adminPool = new pg.Pool({ connectionString: pgLab.adminUrl, max: 2 });
    const parts = (o: CoreParts, audit: MemoryAudit) => ({
      tokens: o.tokens ?? alice,
      idp: o.idp ?? exchanger,
      vault: o.vault ?? vaultClient,
      audit,
      log: (l: string) => logs.core.push(l),
      demo: true,
      ...(o.vaultMode ? { vaultMode: o.vaultMode } : {}),
    });
    adminPool.on('error', () => {});

    return {
      pg: pgLab,
      idp,
      vault,
      upstream: lab.upstream,
      connection,
      exchanger,
      vaultClient,
      alice,
      logs,
      vaultAuditLogPath: lab.vaultAuditLogPath,
      broker(o = {}) {
        const audit = o.audit ?? new MemoryAudit();
        const broker = createBroker({
          ...parts(o, audit),
          connectors: o.connectors ?? [createPostgresConnector({ policy: DEMO_POLICY, connection })],
          ...(o.credentials ? { credentials: o.credentials } : {}),
          ...(o.approver ? { approver: o.approver } : {}),
          ...(o.answer ? { answer: o.answer } : {}),
        });
        return { broker, audit };
      },
      credentials(o = {}) {
        const audit = o.audit ?? new MemoryAudit();
        return { credentials: createCredentials(parts(o, audit)), audit };
      },
      async leftoverRoles() {
        const r = await adminPool.query<{ rolname: string }>("SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-%'");
        return r.rows.map((x) => x.rolname);
      },
      async admin<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []) {
        return (await adminPool.query<T>(sql, params)).rows;
      },
      async stop() {
        await adminPool.end().catch(() => {});
        await vaultClient.close();
        await lab.stop();
      },
    };
  } catch (error) {
    await lab.stop();
    throw error;
  }
}

/** Waits until Vault holds no lease and PostgreSQL no per-call role (revocation may complete lazily). */
export async function settled(lab: BrokerLab, withinMs = 3_000): Promise<{ roles: string[]; leases: number }> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const roles = await lab.leftoverRoles();
    const leases = lab.vault.leases();
    if ((roles.length === 0 && leases === 0) || Date.now() > deadline) return { roles, leases };
    await new Promise((r) => setTimeout(r, 50));
  }
}
