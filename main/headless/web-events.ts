/**
 * The web host's pushed events (`/api/events`). Browsers do not apply CORS to WebSockets, so the
 * upgrade checks `Host` and `Origin` itself, and a socket receives nothing until its first message
 * carries a live bearer; every event is parsed with the contract's schema before it is sent.
 */
import type { IncomingMessage, Server } from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { z } from 'zod';
import { EVENTS, EVENT_NAMES, type EventSubscribe } from '../../common/contract.ts';
import type { SecretSet } from './web-secrets.ts';

const WS_AUTH_TIMEOUT_MS = 5_000;
const WsAuthSchema = z.object({ bearer: z.string().min(1).max(200) }).strict();

export interface EventSockets {
  readonly wss: WebSocketServer;
  /** Authenticated sockets: the pages that see the UI live. */
  readonly live: ReadonlySet<WebSocket>;
}

/** Serves `/api/events` on `server`'s upgrades. `origin` is read at each upgrade (it is known once the server listens). */
export function serveEvents(
  server: Server,
  options: {
    events: EventSubscribe;
    bearers: SecretSet;
    hostIsOurs: (req: IncomingMessage) => boolean;
    origin: () => string;
    log: (line: string) => void;
  },
): EventSockets {
  const { events, bearers, hostIsOurs, log } = options;
  const wss = new WebSocketServer({ noServer: true, maxPayload: 4096 });

  server.on('upgrade', (req, socket, head) => {
    const reject = (why: string): void => {
      log(`web: refused WebSocket: ${why}`);
      socket.end('HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      socket.destroy();
    };
    if (!hostIsOurs(req)) return reject('host mismatch');
    if (req.headers.origin !== options.origin()) return reject('origin mismatch');
    const site = req.headers['sec-fetch-site'];
    if (site !== undefined && site !== 'same-origin')
      return reject(`not same-origin (${String(site).slice(0, 20)})`);
    let pathname: string;
    try {
      pathname = new URL(req.url ?? '/', options.origin()).pathname;
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

  return { wss, live };
}
