/**
 * The local identity lab, composed: PostgreSQL with the clinic database, the IdP, the Vault stand-in
 * configured through its own HTTP API to trust the IdP's OBO tokens (lab/vault/lab-config.ts), and the
 * upstream MCP servers (one that accepts only IdP tokens for its audience, one that wants an API key
 * that Vault holds). `stop()` leaves nothing behind: no process, port, temp dir or database role.
 * A development and demo tool, never part of a packaged build.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LAB_SCOPE_PREFIX, startIdp } from './idp/index.ts';
import type { LabIdp, LabIdpProfile, LabUser } from './idp/index.ts';
import { loadPolicy } from './idp/policy.ts';
import { startPostgres } from './postgres.ts';
import type { LabPostgres } from './postgres.ts';
import { startUpstream } from './upstream/index.ts';
import type { Upstream } from './upstream/index.ts';
import { startVault } from './vault/index.ts';
import type { LabVault } from './vault/index.ts';
import { configureLabVault } from './vault/lab-config.ts';

export interface StartLabOptions {
  /** Receives lifecycle lines (never a secret). */
  log?: (line: string) => void;
  idpPort?: number;
  vaultPort?: number;
  /** Where Vault's audit log goes; by default a file in a temp dir that stop() removes. */
  vaultAuditLogPath?: string;
  /** Which vendor's token exchange the IdP speaks; Vault's roles bind on the claims that vendor yields. */
  idpProfile?: LabIdpProfile;
  /** False plays an IdP whose token exchange is not turned on (for the doctor's tests). */
  idpTokenExchange?: boolean;
}

export interface Lab {
  issuer: string;
  vaultAddr: string;
  /** Vault administrator token (the `root` policy), as `vault server -dev` prints one. */
  vaultToken: string;
  vaultAuditLogPath: string;
  /** `postgresql://127.0.0.1:<port>/clinic`, without credentials: Vault mints them per call. */
  postgresUrl: string;
  /** Superuser URL with its password, for tests and inspection. */
  postgresAdminUrl: string;
  upstreamMcpUrl: string;
  apiKeyUpstreamUrl: string;
  users: readonly LabUser[];
  idp: LabIdp;
  vault: LabVault;
  pg: LabPostgres;
  upstream: Upstream;
  stop(): Promise<void>;
}

export async function startLab(opts: StartLabOptions = {}): Promise<Lab> {
  const log = opts.log ?? (() => {});
  const t0 = Date.now();
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async (): Promise<void> => {
    // Reverse order: the upstreams and Vault go before the IdP, Vault revokes its leases (dropping
    // every per-call role) before PostgreSQL stops.
    for (const stop of stops.splice(0).reverse()) {
      try {
        await stop();
      } catch (e) {
        log(`lab: a part failed to stop: ${(e as Error).name}`);
      }
    }
  };
  try {
    let auditPath = opts.vaultAuditLogPath;
    if (!auditPath) {
      const dir = await mkdtemp(join(tmpdir(), 'countersign-lab-'));
      stops.push(() => rm(dir, { recursive: true, force: true }));
      auditPath = join(dir, 'vault-audit.log');
    }
    const pgStart = startPostgres({ log });
    const idpStart = startIdp({ port: opts.idpPort, log, profile: opts.idpProfile, tokenExchange: opts.idpTokenExchange });
    const [pg, idp] = await Promise.allSettled([pgStart, idpStart]).then((rs) => {
      for (const r of rs) if (r.status === 'fulfilled') stops.push(() => r.value.stop());
      const failed = rs.find((r) => r.status === 'rejected');
      if (failed) throw (failed as PromiseRejectedResult).reason;
      return [(rs[0] as PromiseFulfilledResult<LabPostgres>).value, (rs[1] as PromiseFulfilledResult<LabIdp>).value] as const;
    });

    const apiKey = randomBytes(24).toString('base64url');
    const upstream = await startUpstream({ issuer: idp.issuer, jwksUri: idp.jwksUri, apiKey });
    stops.push(() => upstream.stop());
    const vault = await startVault({ port: opts.vaultPort, log, auditLogPath: auditPath });
    stops.push(() => vault.stop());
    const rights = loadPolicy().rights;
    await configureLabVault({
      addr: vault.addr,
      token: vault.rootToken,
      issuer: idp.issuer,
      jwksUrl: idp.jwksUri,
      postgres: { host: pg.host, port: pg.port, database: pg.database, username: pg.managementUser, password: pg.managementPassword },
      apiKey,
      binding: (role) => idp.profile.vaultBinding(role, LAB_SCOPE_PREFIX),
      // Both Vault modes are ready: JWT login (above) and native agent mode, for the app's client.
      agent: {
        clientId: idp.nativeClientId,
        users: idp.users.map((u) => ({ sub: u.sub, name: u.username, vaultRoles: rights[u.role] ?? [] })),
      },
    });
    log(`lab: ready in ${Date.now() - t0} ms`);

    let stopping: Promise<void> | undefined;
    return {
      issuer: idp.issuer,
      vaultAddr: vault.addr,
      vaultToken: vault.rootToken,
      vaultAuditLogPath: auditPath,
      postgresUrl: `postgresql://${pg.host}:${pg.port}/${pg.database}`,
      postgresAdminUrl: pg.adminUrl,
      upstreamMcpUrl: upstream.url,
      apiKeyUpstreamUrl: upstream.apiKeyUrl,
      users: idp.users,
      idp,
      vault,
      pg,
      upstream,
      stop: () => (stopping ??= stopAll().then(() => log('lab: stopped'))),
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
