/**
 * The lab with every part in a process of its own, so a fault test can do to a part what happens to a
 * real server: SIGKILL it, stop it (SIGSTOP) and let it go on (SIGCONT), start it again on the same
 * port. PostgreSQL is its own server already (lab/postgres.ts); the IdP and the Vault stand-in run as
 * `node lab/cli.ts --part idp|vault`. A fault proxy (lab/fault-proxy.ts) sits in front of the IdP,
 * Vault and PostgreSQL on the paths Countersign uses, so the network between can fail too.
 *
 * The IdP keeps its keys and grants in a state file, so a restarted IdP knows the sessions it had (as
 * a real IdP keeps them in its database). The Vault stand-in keeps its state in memory, so it is never
 * SIGKILLed here: a restart would forget the leases it owes PostgreSQL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startFaultProxy, type FaultProxy } from './fault-proxy.ts';
import { startIdp } from './idp/index.ts';
import { freePort, startPostgres, type LabPostgres } from './postgres.ts';
import { startVault } from './vault/index.ts';
import { configureLabVault, type LabVaultConfig } from './vault/lab-config.ts';

export type PartName = 'idp' | 'vault';

interface PartInput {
  idp: { port: number; issuer: string; stateFile: string };
  vault: { port: number; auditLogPath: string; config: Omit<LabVaultConfig, 'addr' | 'token'> };
}

/** In the part's own process (`lab/cli.ts --part <name>`): starts it, prints one JSON line, runs until SIGTERM. */
export async function runPart(name: PartName): Promise<void> {
  const log = (l: string): void => void process.stderr.write(`${l}\n`);
  const input = JSON.parse(process.env.COUNTERSIGN_LAB_PART ?? '{}') as PartInput[PartName];
  let stop: () => Promise<void>;
  if (name === 'idp') {
    const i = input as PartInput['idp'];
    const idp = await startIdp({ port: i.port, issuer: i.issuer, stateFile: i.stateFile, log });
    stop = () => idp.stop();
    process.stdout.write(`${JSON.stringify({ issuer: idp.issuer, pid: process.pid })}\n`);
  } else {
    const v = input as PartInput['vault'];
    const vault = await startVault({ port: v.port, auditLogPath: v.auditLogPath, log });
    await configureLabVault({ ...v.config, addr: vault.addr, token: vault.rootToken });
    stop = () => vault.stop();
    process.stdout.write(`${JSON.stringify({ addr: vault.addr, rootToken: vault.rootToken, unsealKey: vault.unsealKey, pid: process.pid })}\n`);
  }
  const quit = (): void => void stop().finally(() => process.exit(0));
  process.once('SIGTERM', quit);
  process.once('SIGINT', quit);
}

const CLI = fileURLToPath(new URL('./cli.ts', import.meta.url));

/** One part running in a child process. */
export interface PartProcess<Info> {
  readonly name: PartName;
  readonly info: Info;
  /** Everything the part wrote to stderr, across restarts (scanned for secrets by the tests). */
  readonly log: string[];
  pid(): number | undefined;
  signal(sig: NodeJS.Signals): void;
  /** SIGKILL, and resolves once the process is gone. */
  kill(): Promise<void>;
  /** Starts the part again on the same port with the same input (after `kill`). */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((r) => child.once('exit', () => r()));
}

async function startPartProcess<Info>(name: PartName, input: PartInput[PartName]): Promise<PartProcess<Info>> {
  const log: string[] = [];
  let child: ChildProcess;
  const launch = async (): Promise<Info> => {
    const c = spawn(process.execPath, [CLI, '--part', name], { env: { ...process.env, COUNTERSIGN_LAB_PART: JSON.stringify(input) }, stdio: ['ignore', 'pipe', 'pipe'] });
    child = c;
    c.stderr!.on('data', (d: Buffer) => log.push(d.toString('utf8')));
    return new Promise<Info>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error(`lab part ${name} did not start: ${log.join('').slice(-1500)}`)), 30_000);
      c.stdout!.on('data', (d: Buffer) => {
        out += d.toString('utf8');
        const nl = out.indexOf('\n');
        if (nl === -1) return;
        clearTimeout(timer);
        resolve(JSON.parse(out.slice(0, nl)) as Info);
      });
      c.once('exit', (code, sig) => {
        clearTimeout(timer);
        reject(new Error(`lab part ${name} exited (${code ?? sig}): ${log.join('').slice(-1500)}`));
      });
    });
  };
  const info = await launch();
  let stopped = false;
  return {
    name,
    info,
    log,
    pid: () => (child.exitCode === null && child.signalCode === null ? child.pid : undefined),
    signal: (sig) => void child.kill(sig),
    async kill() {
      child.kill('SIGKILL');
      await exited(child);
    },
    async restart() {
      await exited(child);
      // The port was just released; another process could take it, which the start would report.
      await launch();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      if (child.signalCode === 'SIGSTOP' || child.exitCode === null) child.kill('SIGCONT');
      const gone = exited(child);
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await gone;
      clearTimeout(timer);
    },
  };
}

export interface ProcessLab {
  /** Countersign's view: every address below goes through a fault proxy. */
  issuer: string;
  vaultAddr: string;
  postgres: { host: string; port: number; database: string };
  /** Vault's administrator token (the `root` policy), for the checks a test makes. */
  vaultToken: string;
  vaultUnsealKey: string;
  vaultAuditLogPath: string;
  /** The Vault stand-in's own address, past the proxy. */
  vaultDirect: string;
  pg: LabPostgres;
  idp: PartProcess<{ issuer: string }>;
  vault: PartProcess<{ addr: string; rootToken: string; unsealKey: string }>;
  proxies: { idp: FaultProxy; vault: FaultProxy; postgres: FaultProxy };
  /** Leases Vault still holds (its own `LIST sys/leases/lookup`). */
  leases(): Promise<string[]>;
  stop(): Promise<void>;
}

/**
 * Starts PostgreSQL, the IdP and the Vault stand-in each as its own process, a fault proxy in front of
 * each, and configures Vault (per-call TTL `ttl` seconds) to trust the IdP and mint PostgreSQL roles.
 */
export async function startProcessLab(opts: { ttl?: number; log?: (l: string) => void } = {}): Promise<ProcessLab> {
  const log = opts.log ?? (() => {});
  const dir = await mkdtemp(join(tmpdir(), 'countersign-process-lab-'));
  const stops: Array<() => Promise<void>> = [() => rm(dir, { recursive: true, force: true })];
  const stopAll = async (): Promise<void> => {
    for (const s of stops.splice(0).reverse()) await s().catch(() => {});
  };
  try {
    const pg = await startPostgres({ log });
    stops.push(() => pg.stop());
    const pgProxy = await startFaultProxy({ host: pg.host, port: pg.port });
    stops.push(() => pgProxy.stop());
    // The IdP's issuer is the proxy's address: discovery, JWKS and tokens all pass through it.
    const idpPort = await freePort();
    const idpProxy = await startFaultProxy({ host: '127.0.0.1', port: idpPort });
    stops.push(() => idpProxy.stop());
    const idp = await startPartProcess<{ issuer: string }>('idp', { port: idpPort, issuer: idpProxy.url, stateFile: join(dir, 'idp-state.json') });
    stops.push(() => idp.stop());
    const vaultPort = await freePort();
    const auditLogPath = join(dir, 'vault-audit.log');
    const vault = await startPartProcess<{ addr: string; rootToken: string; unsealKey: string }>('vault', {
      port: vaultPort,
      auditLogPath,
      config: {
        issuer: idp.info.issuer,
        // Vault fetches keys from the IdP directly: the proxy stands between Countersign and its parts.
        jwksUrl: `http://127.0.0.1:${idpPort}/jwks`,
        postgres: { host: pg.host, port: pg.port, database: pg.database, username: pg.managementUser, password: pg.managementPassword },
        apiKey: randomBytes(24).toString('base64url'),
        ...(opts.ttl ? { ttl: opts.ttl } : {}),
      },
    });
    stops.push(() => vault.stop());
    const vaultProxy = await startFaultProxy({ host: '127.0.0.1', port: vaultPort });
    stops.push(() => vaultProxy.stop());
    const vaultDirect = vault.info.addr;
    return {
      issuer: idp.info.issuer,
      vaultAddr: vaultProxy.url,
      postgres: { host: pgProxy.host, port: pgProxy.port, database: pg.database },
      vaultToken: vault.info.rootToken,
      vaultUnsealKey: vault.info.unsealKey,
      vaultAuditLogPath: auditLogPath,
      vaultDirect,
      pg,
      idp,
      vault,
      proxies: { idp: idpProxy, vault: vaultProxy, postgres: pgProxy },
      async leases() {
        const ids: string[] = [];
        const list = async (prefix: string): Promise<void> => {
          const res = await fetch(`${vaultDirect}/v1/sys/leases/lookup/${prefix}?list=true`, { headers: { 'x-vault-token': vault.info.rootToken } });
          if (res.status === 404) return;
          const keys = ((await res.json()) as { data?: { keys?: string[] } }).data?.keys ?? [];
          for (const k of keys) {
            if (k.endsWith('/')) await list(prefix + k);
            else ids.push(prefix + k);
          }
        };
        await list('');
        return ids;
      },
      stop: stopAll,
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
