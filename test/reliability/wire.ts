/**
 * Wire-level helpers of the reliability suite: a newline-JSON MCP client over any pair of streams (a
 * spawned bridge's stdio, or the core's socket after the handshake), and a recording pass-through proxy
 * that lets a test learn the per-call secrets a core in another process received (OBO tokens in Vault
 * login requests, Vault tokens and database passwords in Vault's answers) so it can plant-check them.
 */
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';

export type Json = Record<string, unknown>;

export interface LineClient {
  /** Every line received, parsed or not (the MCP responses a test scans). */
  readonly received: string[];
  send(message: unknown): void;
  sendRaw(line: string): void;
  request(message: Json & { id: string | number }, timeoutMs?: number): Promise<Json>;
  /** Waits for a response to `id` that may already have arrived. */
  response(id: string | number, timeoutMs?: number): Promise<Json>;
}

export function lineClient(readable: Readable, writable: Writable): LineClient {
  const received: string[] = [];
  const responses = new Map<string, Json>();
  const waiting = new Map<string, (m: Json) => void>();
  let buffer = '';
  readable.on('data', (chunk: Buffer) => {
    buffer += chunk.toString('utf8');
    for (let nl = buffer.indexOf('\n'); nl !== -1; nl = buffer.indexOf('\n')) {
      const line = buffer.slice(0, nl);
      buffer = buffer.slice(nl + 1);
      if (!line.trim()) continue;
      received.push(line);
      let m: Json;
      try {
        m = JSON.parse(line) as Json;
      } catch {
        continue;
      }
      if ('method' in m || m.id === undefined || m.id === null) continue;
      const key = JSON.stringify(m.id);
      responses.set(key, m);
      waiting.get(key)?.(m);
    }
  });
  readable.on('error', () => {});
  writable.on('error', () => {});
  const response = (id: string | number, timeoutMs = 15_000): Promise<Json> => {
    const key = JSON.stringify(id);
    const have = responses.get(key);
    if (have) return Promise.resolve(have);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        waiting.delete(key);
        reject(new Error(`no answer to request ${key} within ${timeoutMs} ms`));
      }, timeoutMs);
      waiting.set(key, (m) => {
        clearTimeout(timer);
        waiting.delete(key);
        resolve(m);
      });
    });
  };
  return {
    received,
    send: (message) => writable.write(JSON.stringify(message) + '\n'),
    sendRaw: (line) => writable.write(line),
    request(message, timeoutMs) {
      const p = response(message.id, timeoutMs);
      writable.write(JSON.stringify(message) + '\n');
      return p;
    },
    response,
  };
}

export const INITIALIZE = (id: string | number = 0): Json & { id: string | number } => ({
  jsonrpc: '2.0',
  id,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'reliability', version: '1' } },
});

export const toolCall = (id: string | number, name: string, args: Json): Json & { id: string | number } => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name, arguments: args },
});

export interface RecordingProxy {
  url: string;
  /** Request and response bodies that passed, in order (kept in memory only, never written). */
  readonly exchanges: Array<{ path: string; request: string; response: string }>;
  stop(): Promise<void>;
}

/** A plain HTTP pass-through to `target` that keeps what passed through it. */
export async function startRecordingProxy(target: string): Promise<RecordingProxy> {
  const t = new URL(target);
  const exchanges: RecordingProxy['exchanges'] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const upstream = httpRequest({ host: t.hostname, port: t.port, path: req.url, method: req.method, headers: { ...req.headers, host: t.host } }, async (up) => {
      const out: Buffer[] = [];
      for await (const c of up) out.push(c as Buffer);
      const text = Buffer.concat(out);
      exchanges.push({ path: req.url ?? '', request: body.toString('utf8'), response: text.toString('utf8') });
      const headers = { ...up.headers };
      delete headers['transfer-encoding'];
      headers['content-length'] = String(text.length);
      res.writeHead(up.statusCode ?? 502, headers).end(text);
    });
    upstream.on('error', () => {
      if (!res.headersSent) res.writeHead(502).end();
    });
    upstream.end(body);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    exchanges,
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
