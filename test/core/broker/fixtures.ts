/**
 * Shared pieces of the broker-area tests: a TokenSource backed by a real sign-in at the lab IdP (the
 * auth module's stand-in for tests: same token, obtained over HTTP), a capturing AuditSink, and a
 * fault-injecting HTTP proxy placed in front of a real lab part (IdP, Vault) over real sockets.
 */
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { AuditRecord, AuditRecordInput } from '../../../common/audit-record.ts';
import type { AuditSink, TokenSource, UserIdentity } from '../../../main/core/ports.ts';
import type { LabIdp } from '../../../lab/idp/index.ts';
import { decodeJwt, signIn } from '../../lab/idp-fixtures.ts';

export const USERS = {
  alice: { username: 'alice', password: 'alice-lab-pw' },
  bob: { username: 'bob', password: 'bob-lab-pw' },
  admin: { username: 'admin', password: 'admin-lab-pw' },
} as const;

/** A TokenSource holding a real access token from the lab IdP; `getAccessToken` counts its callers. */
export async function labTokenSource(idp: LabIdp, who: keyof typeof USERS = 'alice'): Promise<TokenSource & { accessToken: string; calls: number }> {
  const tokens = await signIn(idp, USERS[who]);
  const claims = decodeJwt(tokens.access_token as string);
  const id = tokens.id_token ? decodeJwt(tokens.id_token as string) : {};
  const user: UserIdentity = {
    sub: String(claims.sub),
    ...(typeof id.name === 'string' ? { name: id.name } : {}),
    ...(typeof id.email === 'string' ? { email: id.email } : {}),
  };
  const source = {
    accessToken: tokens.access_token as string,
    calls: 0,
    async getAccessToken(signal?: AbortSignal) {
      signal?.throwIfAborted();
      source.calls += 1;
      return source.accessToken;
    },
    async stepUp() {},
    user: () => user,
    dpopKeyPair: () => undefined,
  };
  return source;
}

export class MemoryAudit implements AuditSink {
  readonly records: AuditRecordInput[] = [];
  async append(record: AuditRecordInput): Promise<AuditRecord> {
    this.records.push(structuredClone(record));
    return { ...record, hops: record.hops ?? [], keys: record.keys ?? {}, seq: this.records.length, at: new Date().toISOString(), prev_hash: '', hash: '' } as AuditRecord;
  }
}

export type Fault =
  | { kind: 'status'; status: number; body: string; contentType?: string }
  | { kind: 'delay'; ms: number }
  /** The request goes through at once; its answer is held back `ms`: the part did the work, the answer is late. */
  | { kind: 'late-answer'; ms: number }
  | { kind: 'garbage' }
  | { kind: 'drop' }
  | { kind: 'rewrite'; body: (original: string) => string };

/**
 * A reverse proxy to a real lab part that can inject one fault on requests whose path matches. Faults
 * that a real Vault or IdP produce (503 sealed, 403, slowness, a dropped connection, a body that is not
 * JSON) are reproduced on the wire; everything else passes through untouched.
 */
export class FaultProxy {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  #fault: { match: RegExp; fault: Fault; onHit?: () => void } | null = null;
  url = '';
  hits = 0;
  /** Headers of the last request that came through, to check what a client sends. */
  lastHeaders: Record<string, string | string[] | undefined> = {};

  private constructor(target: string) {
    const t = new URL(target);
    this.#server = createServer((req, res) => void this.#handle(t, req, res));
    this.#server.on('connection', (s) => {
      this.#sockets.add(s);
      s.on('close', () => this.#sockets.delete(s));
    });
  }

  static async start(target: string): Promise<FaultProxy> {
    const p = new FaultProxy(target);
    await new Promise<void>((resolve) => p.#server.listen(0, '127.0.0.1', resolve));
    p.url = `http://127.0.0.1:${(p.#server.address() as AddressInfo).port}`;
    return p;
  }

  /** Injects `fault` on matching requests; `onHit` runs as each one arrives (to act mid-request). */
  set(match: RegExp, fault: Fault, onHit?: () => void): void {
    this.#fault = { match, fault, ...(onHit ? { onHit } : {}) };
    this.hits = 0;
  }

  clear(): void {
    this.#fault = null;
  }

  async #handle(target: URL, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    this.lastHeaders = { ...req.headers };
    const f = this.#fault && this.#fault.match.test(req.url ?? '') ? this.#fault.fault : null;
    if (f) {
      this.hits += 1;
      this.#fault?.onHit?.();
    }
    if (f?.kind === 'status') {
      res.writeHead(f.status, { 'content-type': f.contentType ?? 'application/json' }).end(f.body);
      return;
    }
    if (f?.kind === 'garbage') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('<html>not json');
      return;
    }
    if (f?.kind === 'drop') {
      req.socket.destroy();
      return;
    }
    if (f?.kind === 'delay') await new Promise((r) => setTimeout(r, f.ms));
    if (res.destroyed || req.socket.destroyed) return;
    const headers = { ...req.headers, host: target.host };
    const upstream = httpRequest({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers }, async (up) => {
      const out: Buffer[] = [];
      for await (const c of up) out.push(c as Buffer);
      let text = Buffer.concat(out).toString('utf8');
      const h = { ...up.headers };
      delete h['content-length'];
      delete h['transfer-encoding'];
      if (f?.kind === 'rewrite') text = f.body(text);
      if (f?.kind === 'late-answer') await new Promise((r) => setTimeout(r, f.ms));
      if (!res.destroyed) res.writeHead(up.statusCode ?? 502, h).end(text);
    });
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
    });
    upstream.end(body);
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** Every form a secret could take in a log or a message: raw, base64url, percent- and JSON-encoded, JWT segments. */
export function secretForms(secret: string): string[] {
  const forms = new Set([secret, Buffer.from(secret).toString('base64url'), Buffer.from(secret).toString('base64'), encodeURIComponent(secret), JSON.stringify(secret)]);
  // A JWT's header is shared by every token the issuer signs; its payload and signature are this token's own.
  if (secret.split('.').length === 3) for (const part of secret.split('.').slice(1)) if (part.length > 20) forms.add(part);
  return [...forms];
}

export function findSecret(haystack: string, secrets: Record<string, string>): string[] {
  const found: string[] = [];
  for (const [name, secret] of Object.entries(secrets)) {
    for (const form of secretForms(secret)) if (haystack.includes(form)) found.push(`${name} (${form.slice(0, 12)}…)`);
  }
  return found;
}
