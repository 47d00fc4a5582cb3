/**
 * The headless app's UI host: serves the built renderer on 127.0.0.1 and carries the UI contract over
 * HTTP (calls) and a WebSocket (pushed events). It is an approval surface, so every request must prove
 * it comes from the page this server handed to the person who started it:
 *
 * - a one-time token in the launch URL's fragment (never sent to a server, never in a log or Referer)
 *   is exchanged once, by POST, for a bearer that the page keeps in memory and sends in a header:
 *   never a cookie, so no other site can make the browser attach it;
 * - `Host` must be exactly `127.0.0.1:<port>` (DNS rebinding), `Origin` exactly this origin and
 *   `Sec-Fetch-Site` exactly `same-origin` on every API call (cross-site requests);
 * - the WebSocket upgrade checks `Host` and `Origin` (browsers do not apply CORS to WebSockets) and the
 *   socket receives nothing until its first message carries the bearer;
 * - a CSP with no inline script and `frame-ancestors 'none'` (clickjacking an Approve button);
 * - every request is parsed with the contract's zod schema, every response too (unnamed fields are
 *   stripped), and errors travel as `{code, message}` only.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, realpath, stat } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { extname, join, resolve, sep } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import { serveChannel } from '../../common/channel.ts';
import { AppError, type ErrorCode, type WireError } from '../../common/errors.ts';
import {
  CHANNELS,
  EVENTS,
  ExportRequestSchema,
  EVENT_NAMES,
  isChannel,
  type Channel,
  type ContractHandlers,
  type EventSubscribe,
} from '../../common/contract.ts';

export interface WebServerOptions {
  handlers: ContractHandlers;
  events: EventSubscribe;
  /** The built renderer (`dist/renderer`). */
  staticDir: string;
  /** 0 (the default) picks a free port. */
  port?: number;
  /** How long a launch URL's one-time token can be exchanged. Default 10 minutes. */
  launchTokenTtlMs?: number;
  /** Receives one line per refused request: a reason and a code, never a header value or a body. */
  log?: (line: string) => void;
  /**
   * Streams an export as a download (`POST /api/export`), so a large history is never held as one
   * string the way the `audit.export` channel's answer is. Without it the UI falls back to the channel.
   */
  exportAudit?: (request: ExportRequest) => { filename: string; mediaType: string; lines: Iterable<string> | AsyncIterable<string> };
}

export type ExportRequest = z.output<typeof ExportRequestSchema>;

export interface WebServer {
  /** `http://127.0.0.1:<port>/#token=<one-time>`: open it once. */
  readonly url: string;
  readonly origin: string;
  readonly port: number;
  /** A fresh launch URL with a new one-time token (the page keeps its bearer in memory only, so a reload needs one). */
  issueLaunchUrl(): string;
  /** Pages connected for live updates (an authenticated WebSocket each): 0 means nobody sees the UI. */
  liveUis(): number;
  close(): Promise<void>;
}

const MAX_BODY = 1024 * 1024;
const WS_AUTH_TIMEOUT_MS = 5_000;
const API_PREFIX = '/api/call/';
const REFUSED = Symbol('refused');

const MEDIA_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

const STATUS_OF: Partial<Record<ErrorCode, number>> = {
  INPUT_INVALID: 400,
  WEB_UNAUTHORIZED: 401,
  WEB_FORBIDDEN: 403,
  NOT_FOUND: 404,
  NOT_SIGNED_IN: 409,
  INTERNAL: 500,
};

const SessionRequestSchema = z.object({ token: z.string().min(1).max(200) }).strict();
const WsAuthSchema = z.object({ bearer: z.string().min(1).max(200) }).strict();

function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** A set of secrets held as digests and compared in constant time. */
class SecretSet {
  private readonly entries = new Map<string, number>();

  add(secret: string, expiresAt = Infinity): void {
    this.entries.set(digest(secret).toString('hex'), expiresAt);
  }

  /** Whether `candidate` is a live member; `consume` removes it so it works once. */
  check(candidate: string, consume: boolean): boolean {
    const d = digest(candidate);
    const now = Date.now();
    for (const [hex, expiresAt] of this.entries) {
      if (expiresAt <= now) {
        this.entries.delete(hex);
        continue;
      }
      if (timingSafeEqual(Buffer.from(hex, 'hex'), d)) {
        if (consume) this.entries.delete(hex);
        return true;
      }
    }
    return false;
  }

  clear(): void {
    this.entries.clear();
  }
}

export async function startWebServer(options: WebServerOptions): Promise<WebServer> {
  const { handlers, events } = options;
  const served = serveChannel(CHANNELS, handlers);
  const log = options.log ?? (() => {});
  const ttl = options.launchTokenTtlMs ?? 10 * 60_000;
  const staticRoot = await realpath(resolve(options.staticDir));
  const launchTokens = new SecretSet();
  const bearers = new SecretSet();
  let host = '';
  let origin = '';

  const securityHeaders = (): Record<string, string> => ({
    'Content-Security-Policy': [
      "default-src 'none'",
      "script-src 'self'",
      "style-src 'self'",
      "img-src 'self' data:",
      "font-src 'self'",
      `connect-src 'self' ws://${host}`,
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join('; '),
    'X-Frame-Options': 'DENY',
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Resource-Policy': 'same-origin',
    'Cache-Control': 'no-store',
  });

  const refuse = (res: ServerResponse, code: ErrorCode, message: string, why?: string): void => {
    if (why) log(`web: refused (${code}): ${why}`);
    sendJson(res, STATUS_OF[code] ?? 422, { code, message } satisfies WireError);
  };

  const sendJson = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { ...securityHeaders(), 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
    res.end(text);
  };

  const hostIsOurs = (req: IncomingMessage): boolean => req.headers.host === host;

  const serveStatic = async (req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> => {
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'none' && site !== 'same-origin') {
      return refuse(res, 'WEB_FORBIDDEN', 'This page can only be opened directly.', `static ${site} request`);
    }
    let relative: string;
    try {
      relative = decodeURIComponent(pathname);
    } catch {
      return refuse(res, 'NOT_FOUND', 'Not found.');
    }
    if (relative === '/' || relative === '/index.html') relative = '/index.html';
    if (relative.includes('\0')) return refuse(res, 'NOT_FOUND', 'Not found.');
    const candidate = resolve(join(staticRoot, relative));
    let file: string;
    try {
      file = await realpath(candidate);
      if (!file.startsWith(staticRoot + sep) || !(await stat(file)).isFile()) throw new Error('outside');
    } catch {
      return refuse(res, 'NOT_FOUND', 'Not found.');
    }
    const body = await readFile(file);
    res.writeHead(200, {
      ...securityHeaders(),
      'Content-Type': MEDIA_TYPES[extname(file)] ?? 'application/octet-stream',
      'Content-Length': body.length,
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };

  const readBody = (req: IncomingMessage): Promise<unknown> =>
    new Promise((resolveBody, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      req.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY) {
          reject(new AppError('INPUT_INVALID', 'The request is too large.'));
          req.destroy();
          return;
        }
        chunks.push(chunk);
      });
      req.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if (text === '') return resolveBody({});
        try {
          resolveBody(JSON.parse(text));
        } catch (err) {
          reject(new AppError('INPUT_INVALID', 'The request is not JSON.', { cause: err }));
        }
      });
      req.on('error', (err) => reject(AppError.from(err, 'INPUT_INVALID', 'The request could not be read.')));
    });

  const bearerOf = (req: IncomingMessage): string | null => {
    const header = req.headers.authorization;
    if (typeof header !== 'string') return null;
    const match = /^Bearer ([A-Za-z0-9_-]{1,200})$/.exec(header);
    return match ? match[1]! : null;
  };

  const serveApi = async (req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> => {
    if (req.method !== 'POST') return refuse(res, 'WEB_FORBIDDEN', 'Only POST is accepted here.', `api ${req.method}`);
    if (req.headers.origin !== origin) return refuse(res, 'WEB_FORBIDDEN', 'Requests must come from the Countersign page.', 'api origin mismatch');
    if (req.headers['sec-fetch-site'] !== 'same-origin') {
      return refuse(res, 'WEB_FORBIDDEN', 'Requests must come from the Countersign page.', 'api not same-origin');
    }
    const mediaType = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (mediaType !== 'application/json') return refuse(res, 'INPUT_INVALID', 'Requests must be JSON.', 'api content-type');

    if (pathname === '/api/session') {
      const body = await readBodyOrRefuse(req, res);
      if (body === REFUSED) return;
      const parsed = SessionRequestSchema.safeParse(body);
      if (!parsed.success || !launchTokens.check(parsed.data.token, true)) {
        return refuse(res, 'WEB_UNAUTHORIZED', 'This link has already been used or has expired. Open a new one from `countersign serve`.', 'launch token not live');
      }
      const bearer = newSecret();
      bearers.add(bearer);
      return sendJson(res, 200, { bearer });
    }

    const bearer = bearerOf(req);
    if (bearer === null || !bearers.check(bearer, false)) {
      return refuse(res, 'WEB_UNAUTHORIZED', 'This page is not signed in to the app. Open a new link from `countersign serve`.', 'bearer missing or unknown');
    }
    if (pathname === '/api/export') return serveExport(req, res);
    if (!pathname.startsWith(API_PREFIX)) return refuse(res, 'NOT_FOUND', 'Not found.');
    const name = pathname.slice(API_PREFIX.length);
    if (!isChannel(name) || !CHANNELS[name].hosts.includes('headless')) return refuse(res, 'NOT_FOUND', 'No such channel.');

    const body = await readBodyOrRefuse(req, res);
    if (body === REFUSED) return;
    const result = await dispatch(name, body);
    if ('error' in result) return refuse(res, result.error.code, result.error.message);
    sendJson(res, 200, result.value);
  };

  /** The request's JSON body, or REFUSED once a refusal has been sent (too large, not JSON). */
  const readBodyOrRefuse = async (req: IncomingMessage, res: ServerResponse): Promise<unknown> => {
    try {
      return await readBody(req);
    } catch (err) {
      const e = AppError.from(err, 'INPUT_INVALID');
      refuse(res, e.code, e.message);
      return REFUSED;
    }
  };

  const serveExport = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (!options.exportAudit) return refuse(res, 'NOT_FOUND', 'Not found.');
    const body = await readBodyOrRefuse(req, res);
    if (body === REFUSED) return;
    const parsed = ExportRequestSchema.safeParse(body);
    if (!parsed.success) return refuse(res, 'INPUT_INVALID', 'The export request is not valid.');
    let source: ReturnType<NonNullable<WebServerOptions['exportAudit']>>;
    try {
      source = options.exportAudit(parsed.data);
    } catch (err) {
      const e = AppError.from(err);
      return refuse(res, e.code, e.message);
    }
    res.writeHead(200, {
      ...securityHeaders(),
      'Content-Type': source.mediaType,
      'Content-Disposition': `attachment; filename="${source.filename.replace(/[^A-Za-z0-9._-]/g, '_')}"`,
    });
    try {
      await pipeline(Readable.from(source.lines, { objectMode: false, encoding: 'utf8' }), res);
    } catch (err) {
      log(`web: export stopped (${AppError.from(err).code})`);
      res.destroy();
    }
  };

  const dispatch = async (name: Channel, body: unknown): Promise<{ value: unknown } | { error: WireError }> => {
    try {
      return { value: await served[name](body) };
    } catch (err) {
      const e = AppError.from(err);
      if (!AppError.is(err)) log(`web: ${name} failed (${e.code})`);
      return { error: e.toWire() };
    }
  };

  const server = createServer((req, res) => {
    void (async () => {
      if (!hostIsOurs(req)) return refuse(res, 'WEB_FORBIDDEN', 'Wrong host.', 'host mismatch');
      let pathname: string;
      try {
        pathname = new URL(req.url ?? '/', origin).pathname;
      } catch {
        return refuse(res, 'NOT_FOUND', 'Not found.');
      }
      if (pathname === '/api' || pathname.startsWith('/api/')) return serveApi(req, res, pathname);
      if (req.method !== 'GET' && req.method !== 'HEAD') return refuse(res, 'WEB_FORBIDDEN', 'Only GET is accepted here.', `static ${req.method}`);
      return serveStatic(req, res, pathname);
    })().catch((err: unknown) => {
      log(`web: request failed (${AppError.from(err).code})`);
      if (!res.headersSent) refuse(res, 'INTERNAL', 'An internal error occurred.');
      else res.destroy();
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 60_000;

  const wss = new WebSocketServer({ noServer: true, maxPayload: 4096 });
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  server.on('upgrade', (req, socket, head) => {
    const reject = (why: string): void => {
      log(`web: refused WebSocket: ${why}`);
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      socket.destroy();
    };
    if (!hostIsOurs(req)) return reject('host mismatch');
    if (req.headers.origin !== origin) return reject('origin mismatch');
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin') return reject(`not same-origin (${String(site).slice(0, 20)})`);
    let pathname: string;
    try {
      pathname = new URL(req.url ?? '/', origin).pathname;
    } catch {
      return reject('bad path');
    }
    if (pathname !== '/api/events') return reject('unknown path');
    wss.handleUpgrade(req, socket, head, (ws) => onSocket(ws));
  });

  const live = new Set<WebSocket>();
  const onSocket = (ws: WebSocket): void => {
    const unsubscribes: (() => void)[] = [];
    const timer = setTimeout(() => ws.close(4401, 'unauthorized'), WS_AUTH_TIMEOUT_MS);
    ws.once('message', (data) => {
      clearTimeout(timer);
      let ok: boolean;
      try {
        const parsed = WsAuthSchema.safeParse(JSON.parse(String(data)));
        ok = parsed.success && bearers.check(parsed.data.bearer, false);
      } catch {
        ok = false;
      }
      if (!ok) {
        log('web: refused WebSocket: bearer missing or unknown');
        ws.close(4401, 'unauthorized');
        return;
      }
      for (const event of EVENT_NAMES) {
        unsubscribes.push(
          events(event, (payload) => {
            if (ws.readyState !== ws.OPEN) return;
            const checked = EVENTS[event].safeParse(payload);
            if (!checked.success) {
              log(`web: dropped a malformed ${event} event`);
              return;
            }
            ws.send(JSON.stringify({ event, payload: checked.data }));
          }),
        );
      }
      ws.send(JSON.stringify({ event: 'ready' }));
      live.add(ws);
      ws.on('message', () => ws.close(4400, 'unexpected message'));
    });
    ws.on('close', () => {
      live.delete(ws);
      clearTimeout(timer);
      for (const off of unsubscribes.splice(0)) off();
    });
    ws.on('error', () => ws.terminate());
  };

  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => {
      server.off('error', reject);
      resolveListen();
    });
  });
  const port = (server.address() as AddressInfo).port;
  host = `127.0.0.1:${port}`;
  origin = `http://${host}`;

  const issueLaunchUrl = (): string => {
    const token = newSecret();
    launchTokens.add(token, Date.now() + ttl);
    return `${origin}/#token=${token}`;
  };

  let closed: Promise<void> | null = null;
  return {
    url: issueLaunchUrl(),
    origin,
    port,
    issueLaunchUrl,
    liveUis: () => live.size,
    close() {
      closed ??= (async () => {
        launchTokens.clear();
        bearers.clear();
        for (const client of wss.clients) client.terminate();
        await new Promise<void>((r) => wss.close(() => r()));
        const done = new Promise<void>((r) => server.close(() => r()));
        server.closeAllConnections();
        for (const socket of sockets) socket.destroy();
        await done;
      })();
      return closed;
    },
  };
}
