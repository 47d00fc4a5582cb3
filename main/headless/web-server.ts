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
import { realpath } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { z } from 'zod';
import { serveChannel } from '../../common/channel.ts';
import { AppError, type WireError } from '../../common/errors.ts';
import { CHANNELS, ExportRequestSchema, isChannel, type Channel, type ContractHandlers, type EventSubscribe } from '../../common/contract.ts';
import { serveEvents } from './web-events.ts';
import { bearerOf, readBody, responder } from './web-http.ts';
import { SecretSet, newSecret } from './web-secrets.ts';
import { serveStatic } from './web-static.ts';

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

const API_PREFIX = '/api/call/';
const REFUSED = Symbol('refused');

const SessionRequestSchema = z.object({ token: z.string().min(1).max(200) }).strict();

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

  const http = responder(() => host, log);
  const { securityHeaders, sendJson, refuse } = http;
  const hostIsOurs = (req: IncomingMessage): boolean => req.headers.host === host;

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
      return serveStatic(req, res, pathname, staticRoot, http);
    })().catch((err: unknown) => {
      log(`web: request failed (${AppError.from(err).code})`);
      if (!res.headersSent) refuse(res, 'INTERNAL', 'An internal error occurred.');
      else res.destroy();
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 60_000;

  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });

  const { wss, live } = serveEvents(server, { events, bearers, hostIsOurs, origin: () => origin, log });

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
