/**
 * A typed client for the few Vault HTTP API calls a per-call credential needs: JWT login, database
 * creds, KV v2 read, lease revoke, token revoke-self and lookup-self (Vault's HTTP API docs).
 * Responses are parsed with zod; Vault's `{"errors":[…]}` shapes become AppErrors here and nowhere else.
 * Vault's error strings are never copied except the JWT login reasons Vault documents, which carry no
 * secret (path_login.go), and then only after the token itself is scrubbed from them.
 */
import { Agent } from 'undici';
import { onWire } from '../wire-time.ts';
import { TimeLimit } from '../time-limit.ts';
import { z } from 'zod';
import { AppError } from '../../../common/errors.ts';
import { KnownSecrets } from '../audit/redact.ts';

export interface VaultClientOptions {
  /** `https://vault.example:8200` (no `/v1`). */
  address: string;
  /** Vault Enterprise / HCP namespace, sent as `X-Vault-Namespace`. */
  namespace?: string;
  /** PEM of a private CA that signed Vault's certificate. */
  caCert?: string;
  /** Per-request time-out; the caller's AbortSignal also applies. */
  timeoutMs?: number;
}

const Envelope = z.object({
  request_id: z.string(),
  lease_id: z.string().optional().default(''),
  lease_duration: z.number().optional().default(0),
  renewable: z.boolean().optional().default(false),
  warnings: z.array(z.string()).nullable().optional(),
});

const LoginResponse = Envelope.extend({
  auth: z.object({
    client_token: z.string().min(1),
    accessor: z.string().min(1),
    policies: z.array(z.string()).nullable().optional(),
    token_policies: z.array(z.string()).nullable().optional(),
    metadata: z.record(z.string(), z.string()).nullable().optional(),
    lease_duration: z.number(),
    renewable: z.boolean().optional(),
    entity_id: z.string().optional(),
  }),
});

const DbCredsResponse = Envelope.extend({
  lease_id: z.string().min(1),
  data: z.object({ username: z.string().min(1), password: z.string().min(1) }),
});

const KvResponse = Envelope.extend({
  data: z.object({
    data: z.record(z.string(), z.unknown()).nullable(),
    metadata: z.object({ version: z.number().optional(), destroyed: z.boolean().optional(), deletion_time: z.string().optional() }).passthrough(),
  }),
});

const LookupSelfResponse = Envelope.extend({
  data: z
    .object({
      accessor: z.string(),
      ttl: z.number(),
      policies: z.array(z.string()).nullable().optional(),
      display_name: z.string().optional(),
      meta: z.record(z.string(), z.string()).nullable().optional(),
    })
    .passthrough(),
});

const ErrorBody = z.object({ errors: z.array(z.string()) });

const HealthResponse = z.object({
  initialized: z.boolean(),
  sealed: z.boolean(),
  standby: z.boolean().optional(),
  version: z.string().optional(),
});

/**
 * `sys/health` answers with its state in the body and says it in the status too (api-docs/system/health):
 * 200 active, 429 standby, 472 DR secondary, 473 performance standby, 474 standby that cannot reach the
 * active node, 501 not initialised, 503 sealed, 530 removed from its cluster.
 */
const HEALTH_STATUSES = [200, 429, 472, 473, 474, 501, 503, 530];

export interface VaultLogin {
  token: string;
  accessor: string;
  requestId: string;
  leaseDuration: number;
  policies: string[];
}

export interface DatabaseCreds {
  username: string;
  password: string;
  leaseId: string;
  leaseDuration: number;
  requestId: string;
}

export interface KvSecret {
  data: Record<string, unknown>;
  version?: number;
  requestId: string;
}

export interface VaultHealth {
  initialized: boolean;
  sealed: boolean;
  standby: boolean;
  version?: string;
}

export interface TokenInfo {
  accessor: string;
  ttl: number;
  policies: string[];
  requestId: string;
}

/**
 * Told what a minting request brought back after its caller stopped waiting (`VAULT_UNAVAILABLE` at
 * the client's time limit): a token or lease nothing else knows of, to revoke.
 */
export type LateAnswer<T> = (minted: T) => void;

export interface VaultClient {
  /** With `late`, the request is not cut at the time limit but left to finish (see `LATE_ANSWER_MS`). */
  loginJwt(mount: string, role: string, jwt: string, signal?: AbortSignal, late?: LateAnswer<VaultLogin>): Promise<VaultLogin>;
  /** With `late`, the request is not cut at the time limit but left to finish (see `LATE_ANSWER_MS`). */
  databaseCreds(token: string, mount: string, role: string, signal?: AbortSignal, late?: LateAnswer<DatabaseCreds>): Promise<DatabaseCreds>;
  kvRead(token: string, mount: string, path: string, signal?: AbortSignal): Promise<KvSecret>;
  /**
   * `sys/leases/revoke` with `sync:true`; needs a token whose policy grants it (not the per-call token).
   * `not_held`: Vault answered 400 (`invalid lease`), as it does for a lease it no longer holds.
   */
  revokeLease(token: string, leaseId: string, signal?: AbortSignal): Promise<'revoked' | 'not_held'>;
  /** Revokes the token and every lease created with it (`auth/token/revoke-self`). */
  revokeSelf(token: string, signal?: AbortSignal): Promise<void>;
  lookupSelf(token: string, signal?: AbortSignal): Promise<TokenInfo>;
  /** `sys/health`, which needs no token: whether Vault is initialised, sealed or a standby, and its version. */
  health(signal?: AbortSignal): Promise<VaultHealth>;
  close(): Promise<void>;
}

/** Vault path segments we build from configuration: no traversal, no query, nothing to escape. */
function segment(value: string, what: string): string {
  if (!/^[A-Za-z0-9_.@-]+(\/[A-Za-z0-9_.@-]+)*$/.test(value) || value.split('/').some((s) => s === '..' || s === '.')) {
    throw new AppError('CONFIG_INVALID', `The Vault ${what} "${value}" is not a valid path.`);
  }
  return value;
}

export function createVaultClient(options: VaultClientOptions): VaultClient {
  const base = new URL(options.address);
  if (base.protocol !== 'https:' && base.protocol !== 'http:') throw new AppError('CONFIG_INVALID', 'The Vault address must be http(s).');
  const root = base.href.replace(/\/+$/, '');
  const timeoutMs = options.timeoutMs ?? 10_000;
  const dispatcher = options.caCert ? new Agent({ connect: { ca: options.caCert } }) : undefined;

  /**
   * A request that mints (a login, a credential) whose caller can revoke what it mints only from the
   * answer: the caller stops waiting at the time limit, as for any request, but the request goes on
   * for up to LATE_ANSWER_MS, and what it brings back then goes to `late` rather than being lost with
   * the cut connection, live until its TTL.
   */
  async function minting<T>(request: (limitMs: number) => Promise<T>, op: string, late: LateAnswer<T> | undefined): Promise<T> {
    if (!late) return request(timeoutMs);
    const work = request(LATE_ANSWER_MS);
    using wait = new TimeLimit(timeoutMs);
    const gaveUp = new Promise<never>((_, reject) =>
      wait.signal.addEventListener('abort', () => reject(new AppError('VAULT_UNAVAILABLE', `Vault did not answer ${op} in time.`)), { once: true }),
    );
    try {
      return await Promise.race([work, gaveUp]);
    } catch (error) {
      if (wait.signal.aborted) work.then(late, () => {});
      throw error;
    }
  }

  async function call<T>(
    method: 'GET' | 'POST',
    path: string,
    opts: {
      /** The request's own bound, when it is not the client's time limit (a minting request's). */
      limitMs?: number;
      token?: string;
      body?: unknown;
      schema?: z.ZodType<T>;
      signal?: AbortSignal;
      op: string;
      secrets?: string[];
      answers?: number[];
      rootNamespace?: boolean;
      /** Told the status of an answer accepted through `answers`. */
      status?: (status: number) => void;
    },
  ): Promise<T | undefined> {
    const headers: Record<string, string> = { 'X-Vault-Request': 'true' };
    if (options.namespace && !opts.rootNamespace) headers['X-Vault-Namespace'] = options.namespace;
    if (opts.token) headers['X-Vault-Token'] = opts.token;
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json';
    // Bounds the request and the reading of its answer, and ends with them.
    using limit = new TimeLimit(opts.limitMs ?? timeoutMs);
    const timeout = limit.signal;
    const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
    // Built before the clock starts: only the request and the reading of its answer are Vault's time.
    const init = {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal,
      redirect: 'error',
      ...(dispatcher ? { dispatcher } : {}),
    } as RequestInit;
    let response: Response;
    try {
      response = await onWire('vault', () => fetch(`${root}/v1/${path}`, init));
    } catch (error) {
      throw transportError(error, opts.signal, timeout, opts.op);
    }
    let text: string;
    try {
      text = await onWire('vault', () => response.text());
    } catch (error) {
      throw transportError(error, opts.signal, timeout, opts.op);
    }
    if (response.status >= 400 && !opts.answers?.includes(response.status)) throw vaultError(response.status, text, opts.op, opts.secrets ?? []);
    opts.status?.(response.status);
    if (!opts.schema) return undefined;
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (error) {
      throw new AppError('VAULT_BAD_RESPONSE', `Vault's answer to ${opts.op} was not JSON.`, { cause: error });
    }
    const parsed = opts.schema.safeParse(json);
    if (!parsed.success) {
      const fields = parsed.error.issues
        .slice(0, 3)
        .map((i) => i.path.join('.'))
        .join(', ');
      throw new AppError('VAULT_BAD_RESPONSE', `Vault's answer to ${opts.op} did not have the expected shape (${fields}).`);
    }
    return parsed.data;
  }

  return {
    async loginJwt(mount, role, jwt, signal, late) {
      const path = `auth/${segment(mount, 'auth mount')}/login`;
      const op = 'the JWT login';
      return minting(
        async (limitMs) => {
          const r = await call('POST', path, { body: { role, jwt }, schema: LoginResponse, signal, op, secrets: [jwt], limitMs });
          const a = r!.auth;
          return {
            token: a.client_token,
            accessor: a.accessor,
            requestId: r!.request_id,
            leaseDuration: a.lease_duration,
            policies: a.token_policies ?? a.policies ?? [],
          };
        },
        op,
        late,
      );
    },
    async databaseCreds(token, mount, role, signal, late) {
      const path = `${segment(mount, 'database mount')}/creds/${segment(role, 'database role')}`;
      const op = 'the database credential request';
      return minting(
        async (limitMs) => {
          const r = await call('GET', path, { token, schema: DbCredsResponse, signal, op, limitMs });
          return {
            username: r!.data.username,
            password: r!.data.password,
            leaseId: r!.lease_id,
            leaseDuration: r!.lease_duration,
            requestId: r!.request_id,
          };
        },
        op,
        late,
      );
    },
    async kvRead(token, mount, path, signal) {
      const r = await call('GET', `${segment(mount, 'KV mount')}/data/${segment(path, 'secret path')}`, {
        token,
        schema: KvResponse,
        signal,
        op: 'the secret read',
      });
      if (!r!.data.data) throw new AppError('VAULT_BAD_RESPONSE', `The secret ${path} has been deleted.`);
      return { data: r!.data.data, version: r!.data.metadata.version, requestId: r!.request_id };
    },
    async revokeLease(token, leaseId, signal) {
      let status = 0;
      await call('POST', 'sys/leases/revoke', { token, body: { lease_id: leaseId, sync: true }, signal, op: 'the lease revocation', answers: [400], status: (s) => (status = s) });
      return status === 400 ? 'not_held' : 'revoked';
    },
    async revokeSelf(token, signal) {
      await call('POST', 'auth/token/revoke-self', { token, signal, op: 'the token revocation' });
    },
    async lookupSelf(token, signal) {
      const r = await call('GET', 'auth/token/lookup-self', { token, schema: LookupSelfResponse, signal, op: 'the token lookup' });
      return { accessor: r!.data.accessor, ttl: r!.data.ttl, policies: r!.data.policies ?? [], requestId: r!.request_id };
    },
    async health(signal) {
      // the cluster's state, not a namespace's: asked without the namespace header
      const r = await call('GET', 'sys/health', { schema: HealthResponse, signal, op: 'the health check', answers: HEALTH_STATUSES, rootNamespace: true });
      return { initialized: r!.initialized, sealed: r!.sealed, standby: r!.standby ?? false, version: r!.version };
    },
    async close() {
      await dispatcher?.close();
    },
  };
}

/**
 * How long a minting request whose caller stopped waiting is left to finish: a token or credential it
 * brings back later than this is left to its TTL.
 */
export const LATE_ANSWER_MS = 60_000;

function transportError(error: unknown, caller: AbortSignal | undefined, timeout: AbortSignal, op: string): AppError {
  if (caller?.aborted) return new AppError('CANCELLED', `The call was cancelled during ${op}.`, { cause: error });
  if (timeout.aborted) return new AppError('VAULT_UNAVAILABLE', `Vault did not answer ${op} in time.`, { cause: error });
  return new AppError('VAULT_UNAVAILABLE', `Vault could not be reached for ${op}.`, { cause: error });
}

/**
 * Vault's documented JWT login failures (vault-plugin-auth-jwt path_login.go): their text names the
 * role or the failing claim, which is what a person needs to fix the binding. Matched as whole known
 * prefixes, only to decide whether the text is safe to show, never to choose the code.
 */
const LOGIN_REASONS = [
  'missing role',
  'role "',
  'role with oidc role_type is not allowed',
  'missing token',
  'error validating token',
  'audience claim found in JWT but no audiences bound to the role',
  'error validating claims',
  'claim "',
];

function vaultError(status: number, text: string, op: string, secrets: string[]): AppError {
  let errors: string[] = [];
  try {
    const parsed = ErrorBody.safeParse(JSON.parse(text));
    if (parsed.success) errors = parsed.data.errors;
  } catch {
    // Not Vault's shape; the status alone decides.
  }
  switch (status) {
    case 503:
      return new AppError('VAULT_SEALED', `Vault is sealed or in standby and cannot serve ${op}; ask its operator to unseal it.`);
    case 403:
      return new AppError('VAULT_PERMISSION_DENIED', `Vault denied ${op} (permission denied): the per-call token does not grant it.`);
    case 400: {
      if (op === 'the JWT login') {
        const reason = errors.find((e) => LOGIN_REASONS.some((p) => e.startsWith(p)));
        const safe = reason ? KnownSecrets.of(secrets).mask(reason).slice(0, 300) : 'no reason given';
        return new AppError('VAULT_LOGIN_FAILED', `Vault refused the login with this call's token: ${safe}.`);
      }
      return new AppError('VAULT_BAD_RESPONSE', `Vault rejected ${op} as invalid (400).`);
    }
    case 404:
      return new AppError('VAULT_BAD_RESPONSE', `Vault has nothing at the path used for ${op} (404); check the mount and role names.`);
    case 429:
      return new AppError('VAULT_UNAVAILABLE', `Vault is rate-limiting requests (429) during ${op}.`);
    default:
      return new AppError('VAULT_UNAVAILABLE', `Vault failed ${op} (HTTP ${status}).`);
  }
}
