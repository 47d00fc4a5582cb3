/** Shared shapes of the Vault stand-in: requests, responses, tokens, leases and the backends' contract. */
import type { OAuthCall } from './agent-auth.ts';

export type Operation = 'read' | 'create' | 'update' | 'delete' | 'list';

/** A Vault error response: `{"errors":[…]}` with the status Vault gives it (sdk/logical/response_util.go). */
export class VaultError extends Error {
  readonly status: number;
  readonly errors: string[];
  constructor(status: number, errors: string[] | string) {
    const list = typeof errors === 'string' ? [errors] : errors;
    super(list.join('; ') || `status ${status}`);
    this.status = status;
    this.errors = list;
  }
}

export const badRequest = (msg: string): VaultError => new VaultError(400, msg);
export const permissionDenied = (): VaultError => new VaultError(403, 'permission denied');
export const notFound = (): VaultError => new VaultError(404, []);

export interface Token {
  id: string;
  accessor: string;
  policies: string[];
  meta: Record<string, string> | null;
  displayName: string;
  path: string;
  entityId: string;
  /** seconds since epoch */
  creationTime: number;
  creationTtl: number;
  /** ms since epoch, or null for a token that never expires (root) */
  expiresAt: number | null;
  numUses: number;
  orphan: boolean;
  /** leases created with this token: revoked with it */
  leases: Set<string>;
  timer?: NodeJS.Timeout;
  /** Set for an OAuth JWT presented as the token: it exists for one request and is never stored. */
  oauth?: OAuthCall;
}

export interface Lease {
  id: string;
  issueTime: number;
  expiresAt: number;
  ttl: number;
  renewable: boolean;
  tokenId: string | null;
  /** runs the revocation (e.g. the database role's revocation statements) */
  revoke(): Promise<void>;
  timer?: NodeJS.Timeout;
  attempts: number;
}

export interface AuthBlock {
  client_token: string;
  accessor: string;
  policies: string[];
  token_policies: string[];
  identity_policies: string[] | null;
  metadata: Record<string, string>;
  lease_duration: number;
  renewable: boolean;
  entity_id: string;
  token_type: 'service';
  orphan: boolean;
  mfa_requirement: null;
  num_uses: number;
}

/** What a backend returns; the server wraps it in Vault's envelope (or answers 204 when empty). */
export interface BackendResponse {
  data?: Record<string, unknown> | null;
  auth?: AuthBlock;
  lease?: { id: string; duration: number; renewable: boolean };
  warnings?: string[];
  /** A body sent as is (sys/seal-status, sys/health), with an optional status. */
  raw?: unknown;
  status?: number;
}

export interface VaultRequest {
  id: string;
  method: string;
  operation: Operation;
  /** path after /v1/ */
  path: string;
  body: Record<string, unknown>;
  query: URLSearchParams;
  token: Token | null;
  remoteAddress: string;
  remotePort: number;
}

export interface Backend {
  readonly type: string;
  readonly accessor: string;
  /** Whether the resource at this mount-relative path exists (POST is `create` when it does not). */
  exists?(rel: string): boolean;
  handle(req: VaultRequest, rel: string): Promise<BackendResponse | null>;
  /** Called when the mount is disabled or the server stops. */
  close?(): Promise<void>;
}

export function toList(v: unknown): string[] {
  if (v === undefined || v === null || v === '') return [];
  if (Array.isArray(v)) return v.map((x) => String(x));
  if (typeof v === 'string') return v.split(',').map((s) => s.trim()).filter(Boolean);
  return [String(v)];
}

/** Vault's duration fields accept an integer number of seconds or a Go duration string ("1h30m"). */
export function toSeconds(v: unknown, field: string): number {
  if (v === undefined || v === null || v === '') return 0;
  if (typeof v === 'number' && Number.isFinite(v)) return Math.trunc(v);
  if (typeof v === 'string') {
    if (/^-?\d+$/.test(v)) return Number(v);
    const re = /(\d+(?:\.\d+)?)(h|m|s|ms)/g;
    let total = 0;
    let consumed = '';
    for (const m of v.matchAll(re)) {
      const n = Number(m[1]);
      total += m[2] === 'h' ? n * 3600 : m[2] === 'm' ? n * 60 : m[2] === 's' ? n : n / 1000;
      consumed += m[0];
    }
    if (consumed === v) return Math.trunc(total);
  }
  throw badRequest(`error converting input ${JSON.stringify(v)} for field "${field}": time: invalid duration "${String(v)}"`);
}

export function toBool(v: unknown, dflt: boolean): boolean {
  if (v === undefined || v === null || v === '') return dflt;
  if (typeof v === 'boolean') return v;
  if (v === 'true' || v === '1' || v === 1) return true;
  if (v === 'false' || v === '0' || v === 0) return false;
  return dflt;
}

const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

export function randomAlnum(n: number, bytes: (n: number) => Uint8Array): string {
  const out: string[] = [];
  while (out.length < n) {
    for (const b of bytes(n * 2)) {
      if (b < 248 && out.length < n) out.push(ALNUM[b % 62]!);
    }
  }
  return out.join('');
}
