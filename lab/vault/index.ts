/**
 * A stand-in for HashiCorp Vault that speaks Vault's documented HTTP API (api-docs/index.mdx) for what
 * Countersign uses: the response envelope and `{"errors":[…]}`, status codes, ACL policies enforced on
 * every request, the JWT auth method, tokens with TTLs, the PostgreSQL database secrets engine with
 * leases that drop real roles when revoked or expired, KV v1/v2, a file audit device in Vault's
 * format, a seal, and knobs for fault tests (latency, injected errors, failing revocations); and
 * Vault Enterprise's native agent mode (agent-auth.ts: OAuth JWTs as the token, identity aliases, the
 * Agent Registry, RAR). It passes test/lab/conformance/vault.mjs and vault-agent.mjs; see
 * docs/vault.md for configuring a real Vault the same way.
 *
 * Lab only: state lives in memory and there is one unseal key.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { capabilitiesFor } from './acl.ts';
import { AgentMode } from './agent-auth.ts';
import type { FileAuditDevice } from './audit.ts';
import { ExpirationManager } from './expiration.ts';
import { MountTable, type Mount } from './mounts.ts';
import { SystemBackend } from './system.ts';
import { TokenStore } from './token-store.ts';
import { badRequest, notFound, permissionDenied, randomAlnum, VaultError } from './types.ts';
import type { BackendResponse, Operation, Token, VaultRequest } from './types.ts';

export type { Token, Lease } from './types.ts';

/** Injected faults, for tests of how the app fails closed. */
export type VaultFault =
  /** Answer `status` with `errors` on requests whose path matches (a trailing `*` matches any suffix). */
  | { kind: 'http'; path: string; method?: string; status: number; errors?: string[]; times?: number }
  /** Lease revocation fails (as when the database is unreachable): revoke-self and sys/leases/revoke
   * answer 500, the lease stays and is retried later. */
  | { kind: 'revoke'; times?: number };

export interface StartVaultOptions {
  /** Host port; 0 (default) picks a free one. */
  port?: number;
  log?: (line: string) => void;
  /** Enables a `file` audit device at `file/` writing here. */
  auditLogPath?: string;
}

export interface LabVault {
  addr: string;
  /** An administrator token with the `root` policy, as `vault server -dev` prints one. */
  rootToken: string;
  unsealKey: string;
  auditLogPath: string | undefined;
  seal(): void;
  unseal(): void;
  setLatency(ms: number): void;
  setFault(fault: VaultFault | null): void;
  /** Outstanding leases. */
  leases(): number;
  /** Lease ids, for tests. */
  leaseIds(): string[];
  /** HMAC of a string as the audit device writes it (sys/audit-hash). */
  auditHash(input: string): string | undefined;
  stop(): Promise<void>;
}

/** sys paths that need `sudo` besides the operation's capability (vault/logical_system.go PathsSpecial.Root). */
const SUDO_PATHS = [/^sys\/auth\/.+/, /^sys\/audit(\/.*)?$/, /^sys\/seal$/, /^sys\/leases\/revoke-prefix\/.*/, /^sys\/leases\/revoke-force\/.*/, /^sys\/leases\/lookup\/.*/, /^sys\/raw(\/.*)?$/, /^sys\/rotate$/];
const UNAUTHENTICATED = [/^sys\/seal-status$/, /^sys\/health$/, /^sys\/unseal$/, /^sys\/leader$/, /^sys\/init$/];

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const bytes = (n: number): Uint8Array => randomBytes(n);

function faultMatches(f: Extract<VaultFault, { kind: 'http' }>, path: string, method: string): boolean {
  if (f.method && f.method.toUpperCase() !== method) return false;
  const p = f.path.replace(/^\/?(v1\/)?/, '');
  return p.endsWith('*') ? path.startsWith(p.slice(0, -1)) : path === p;
}

/**
 * Starts the stand-in on 127.0.0.1. Laid out as Vault is: the token store (token-store.ts), lease
 * expiry (expiration.ts), the mount table and router (mounts.ts) with one file per backend (kv.ts,
 * database.ts, jwt-auth.ts), the system backend (system.ts), agent mode (agent-auth.ts); this file is
 * the HTTP handler (vault/http, vault/request_handling.go): seal, ACL and audit around every request.
 */
export async function startVault(options: StartVaultOptions = {}): Promise<LabVault> {
  const log = options.log ?? (() => {});
  const rootToken = `hvs.${randomAlnum(24, bytes)}`;
  const unsealKey = randomBytes(32).toString('base64');
  let latency = 0;
  let fault: VaultFault | null = null;
  let addr = '';

  const takeRevokeFault = (): boolean => {
    if (fault?.kind !== 'revoke') return false;
    if (fault.times !== undefined) {
      fault.times -= 1;
      if (fault.times <= 0) fault = null;
    }
    return true;
  };
  const tokens = new TokenStore();
  const expiration = new ExpirationManager((id) => tokens.get(id)?.leases, log);
  tokens.expiration = expiration;
  tokens.addRoot(rootToken);
  const mounts = new MountTable({ expiration, issueToken: tokens.issue, failRevocations: takeRevokeFault });
  const agent = new AgentMode((name) => system.rules(name), () => addr);
  const system: SystemBackend = new SystemBackend({ unsealKey, mounts, expiration, agent });

  // --- HTTP ------------------------------------------------------------------------------------
  function send(res: ServerResponse, status: number, body: unknown): void {
    if (status === 204 || body === undefined) {
      res.writeHead(status === 200 ? 204 : status, { 'cache-control': 'no-store' });
      res.end();
      return;
    }
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size > 32 * 1024 * 1024) throw new VaultError(413, 'request body too large');
      chunks.push(c as Buffer);
    }
    const text = Buffer.concat(chunks).toString('utf8').trim();
    if (!text) return {};
    try {
      const v = JSON.parse(text) as unknown;
      if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
      if (v === null) return {};
    } catch {
      /* fall through */
    }
    throw badRequest('failed to parse JSON input: invalid character in request body');
  }

  function auditAuth(d: FileAuditDevice, t: Token | null): Record<string, unknown> {
    if (!t) return { token_type: 'default' };
    return {
      client_token: d.hash(t.id),
      accessor: d.hash(t.accessor),
      display_name: t.displayName,
      policies: t.policies,
      token_policies: t.policies,
      metadata: t.meta,
      entity_id: t.entityId,
      token_type: 'service',
      token_ttl: t.creationTtl,
      token_issue_time: new Date(t.creationTime * 1000).toISOString(),
    };
  }

  function auditRequest(d: FileAuditDevice, r: VaultRequest, mount: Mount | undefined): Record<string, unknown> {
    return {
      id: r.id,
      operation: r.operation,
      mount_point: mount?.path ?? (r.path.startsWith('auth/token/') ? 'auth/token/' : r.path.startsWith('sys/') ? 'sys/' : ''),
      mount_type: mount?.type ?? (r.path.startsWith('auth/token/') ? 'token' : r.path.startsWith('sys/') ? 'system' : ''),
      mount_accessor: mount?.accessor ?? '',
      namespace: { id: 'root' },
      path: r.path,
      data: Object.keys(r.body).length ? d.hashStructure(r.body) : undefined,
      remote_address: r.remoteAddress,
      remote_port: r.remotePort,
      client_token: r.token ? d.hash(r.token.id) : undefined,
      client_token_accessor: r.token ? d.hash(r.token.accessor) : undefined,
    };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://vault.invalid');
    if (latency > 0) await sleep(latency);
    if (url.pathname === '/.well-known/oauth-protected-resource' && (req.method === 'GET' || req.method === 'HEAD')) {
      send(res, 200, { request_id: randomUUID(), lease_id: '', renewable: false, lease_duration: 0, data: agent.resourceMetadata(), wrap_info: null, warnings: null, auth: null });
      return;
    }
    if (!url.pathname.startsWith('/v1/')) {
      send(res, 404, { errors: [] });
      return;
    }
    let path: string;
    try {
      path = decodeURIComponent(url.pathname.slice(4));
    } catch {
      send(res, 400, { errors: ['invalid request path'] });
      return;
    }
    const method = (req.method ?? 'GET').toUpperCase();
    const requestId = randomUUID();
    let operation: Operation;
    if (method === 'GET' || method === 'HEAD') operation = url.searchParams.get('list') === 'true' ? 'list' : 'read';
    else if (method === 'LIST') operation = 'list';
    else if (method === 'POST' || method === 'PUT' || method === 'PATCH') operation = 'update';
    else if (method === 'DELETE') operation = 'delete';
    else {
      send(res, 405, { errors: ['unsupported operation'] });
      return;
    }
    const cleanPath = path.replace(/\/$/, '');
    const listPath = operation === 'list' ? `${cleanPath}/` : cleanPath;
    const unauthenticated = UNAUTHENTICATED.some((r) => r.test(cleanPath)) || mounts.isLoginPath(cleanPath) || AgentMode.unauthenticated(cleanPath);

    let vreq: VaultRequest | undefined;
    let mount: Mount | undefined;
    try {
      if (system.sealed && !/^sys\/(seal-status|health|unseal)$/.test(cleanPath)) throw new VaultError(503, 'Vault is sealed');
      if (fault?.kind === 'http' && faultMatches(fault, cleanPath, method)) {
        const f = fault;
        if (f.times !== undefined && --f.times <= 0) fault = null;
        throw new VaultError(f.status, f.errors ?? [f.status === 403 ? 'permission denied' : f.status === 503 ? 'Vault is sealed' : 'internal error']);
      }
      const body = method === 'GET' || method === 'DELETE' || method === 'HEAD' ? {} : await readBody(req);
      const header = req.headers['x-vault-token'];
      const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
      const raw = (typeof header === 'string' ? header : undefined) ?? bearer;
      const token = raw ? (tokens.get(raw) ?? (await agent.authenticate(raw))) : null;
      if (token && !token.oauth && token.expiresAt !== null && token.expiresAt <= Date.now()) {
        void tokens.revoke(token).catch(() => {});
        throw permissionDenied();
      }
      mount = mounts.find(cleanPath);
      if (operation === 'update' && mount?.backend.exists && !mount.backend.exists(cleanPath.slice(mount.path.length))) operation = 'create';
      if (cleanPath.startsWith('auth/token/') && operation === 'create') operation = 'update';
      vreq = {
        id: requestId,
        method,
        operation,
        path: listPath,
        body,
        query: url.searchParams,
        token,
        remoteAddress: req.socket.remoteAddress ?? '',
        remotePort: req.socket.remotePort ?? 0,
      };
      for (const d of system.audits.values()) void d.write({ type: 'request', auth: auditAuth(d, token), request: auditRequest(d, vreq, mount) });

      if (!unauthenticated) {
        if (!token) throw permissionDenied();
        if (token.oauth) {
          agent.authorize(token, listPath, operation, body, SUDO_PATHS.some((r) => r.test(cleanPath)));
        } else if (!token.policies.includes('root')) {
          const caps = capabilitiesFor(system.rulesOf(token), listPath);
          if (caps.has('deny') || !caps.has(operation)) throw permissionDenied();
          if (SUDO_PATHS.some((r) => r.test(cleanPath)) && !caps.has('sudo')) throw permissionDenied();
        }
      }

      let out: BackendResponse | null;
      if (cleanPath.startsWith('sys/') || cleanPath === 'sys') out = await system.handle(vreq, cleanPath.slice(4));
      else if (cleanPath.startsWith('auth/token/')) out = await tokens.handle(vreq, cleanPath.slice('auth/token/'.length));
      else if (cleanPath.startsWith('identity/') || cleanPath.startsWith('agent-registry/')) out = agent.handle(vreq, cleanPath);
      else if (mount) out = await mount.backend.handle(vreq, operation === 'list' ? listPath.slice(mount.path.length) : cleanPath.slice(mount.path.length));
      else throw new VaultError(404, [`no handler for route "${cleanPath}". route entry not found.`]);

      // A read that finds nothing answers 404 with no errors (vault/http/logical.go).
      if (out === null && operation === 'read') throw notFound();

      let status = out?.status ?? 200;
      let body2: unknown;
      if (out && out.raw !== undefined) {
        body2 = out.raw === null ? undefined : out.raw;
      } else if (out && (out.data !== undefined || out.auth || out.lease)) {
        body2 = {
          request_id: requestId,
          lease_id: out.lease?.id ?? '',
          renewable: out.lease?.renewable ?? false,
          lease_duration: out.lease?.duration ?? 0,
          data: out.data ?? null,
          wrap_info: null,
          warnings: out.warnings ?? null,
          auth: out.auth ?? null,
          mount_type: mount?.type ?? (cleanPath.startsWith('auth/token/') ? 'token' : cleanPath.startsWith('sys/') ? 'system' : ''),
        };
      } else {
        status = out?.status ?? 204;
      }
      // Vault answers only once the response is in every audit device.
      const done = vreq;
      await Promise.all([...system.audits.values()].map((d) =>
        d.write({
          type: 'response',
          auth: auditAuth(d, out?.auth ? (tokens.get(out.auth.client_token) ?? token) : token),
          request: auditRequest(d, done, mount),
          response: {
            mount_point: mount?.path,
            mount_type: mount?.type,
            mount_accessor: mount?.accessor,
            auth: out?.auth
              ? { ...out.auth, client_token: d.hash(out.auth.client_token), accessor: d.hash(out.auth.accessor) }
              : undefined,
            secret: out?.lease ? { lease_id: out.lease.id } : undefined,
            data: out?.data ? d.hashStructure(out.data) : undefined,
          },
        }),
      ));
      send(res, status, body2);
    } catch (e) {
      const err = e instanceof VaultError ? e : new VaultError(500, 'internal error');
      if (!(e instanceof VaultError)) log(`vault: internal error on ${method} ${cleanPath}`);
      const failed = vreq;
      if (failed) {
        await Promise.all([...system.audits.values()].map((d) =>
          d.write({
            type: 'response',
            error: err.errors.join('; '),
            auth: auditAuth(d, failed.token),
            request: auditRequest(d, failed, mount),
            response: { mount_point: mount?.path, mount_type: mount?.type },
          }),
        ));
      }
      send(res, err.status, { errors: err.errors });
    }
  }

  if (options.auditLogPath) system.enableFileAudit('file/', options.auditLogPath);

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) send(res, 500, { errors: ['internal error'] });
    });
  });
  // As Vault's own listener (Go's net/http) answers: no Keep-Alive header, the connection kept for the
  // next request (Vault closes it after http_idle_timeout, five minutes; clients close theirs sooner).
  // Node's server sends no such header with the timeout off. With `Keep-Alive: timeout=1` undici (and
  // so fetch) took every answer as the connection's last and opened a new one for the next request.
  server.keepAliveTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  addr = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  log(`vault: listening on ${addr}`);

  let stopped: Promise<void> | undefined;
  return {
    addr,
    rootToken,
    unsealKey,
    auditLogPath: options.auditLogPath,
    seal: () => {
      system.sealed = true;
    },
    unseal: () => {
      system.sealed = false;
    },
    setLatency: (ms) => {
      latency = Math.max(0, ms);
    },
    setFault: (f) => {
      fault = f ? { ...f } : null;
    },
    leases: () => expiration.size,
    leaseIds: () => expiration.ids(),
    auditHash: (input) => system.audits.get('file/')?.hash(input),
    stop: () =>
      (stopped ??= (async () => {
        expiration.stopping = true;
        fault = null;
        server.closeAllConnections();
        await new Promise<void>((r) => server.close(() => r()));
        await expiration.revokeAll(sleep);
        for (const t of tokens.values()) if (t.timer) clearTimeout(t.timer);
        await mounts.close();
        for (const d of system.audits.values()) await d.flush();
        log('vault: stopped');
      })()),
  };
}
