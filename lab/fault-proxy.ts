/**
 * A TCP proxy that sits in front of one lab part (IdP, Vault stand-in, PostgreSQL, upstream MCP) and
 * breaks the network between it and Countersign on demand: latency, a hang, a reset on connect or in
 * the middle of a response, a half-open connection (the peer gone without a FIN), a response cut short.
 * It works on bytes, not on HTTP, so the same faults apply to PostgreSQL's wire protocol.
 *
 * The fault in force is read again on every chunk a client sends, so a keep-alive connection opened
 * before the fault gets it on its next request. Lab only.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export type ProxyFault =
  /** Every chunk, both ways, delivered `ms` later (order kept). */
  | { kind: 'latency'; ms: number }
  /** The connection is accepted and what the client sends is swallowed: no answer, no close. */
  | { kind: 'hang' }
  /** The connection is reset (RST) as soon as the client sends anything. */
  | { kind: 'reset' }
  /** The request reaches the part; after `afterBytes` bytes of its answer the connection is reset. */
  | { kind: 'reset-mid-response'; afterBytes: number }
  /** The request reaches the part; its answer never comes back and the connection is never closed. */
  | { kind: 'half-open' }
  /** The request reaches the part; after `afterBytes` bytes of its answer the connection is closed (FIN). */
  | { kind: 'truncate'; afterBytes: number }
  /**
   * Both ways as usual, the client's FIN passed on to the part; the part's close of the connection
   * reaches the client `ms` later (a server slow to end its sessions: a PostgreSQL backend closes its
   * socket only once its process has exited).
   */
  | { kind: 'slow-close'; ms: number };

export interface FaultProxy {
  /** `127.0.0.1:<port>` as a host and port pair, and as an `http://` URL. */
  readonly host: '127.0.0.1';
  readonly port: number;
  readonly url: string;
  setFault(fault: ProxyFault | null): void;
  /** Connections accepted since the start, for a test that wants proof the fault was met. */
  readonly accepted: number;
  /** Bytes the part has sent back through the proxy since the start: how much of an answer was read. */
  readonly answeredBytes: number;
  /** Closes every connection (faulted ones included) and stops listening. */
  stop(): Promise<void>;
}

export async function startFaultProxy(target: { host: string; port: number }, opts: { port?: number } = {}): Promise<FaultProxy> {
  let fault: ProxyFault | null = null;
  let accepted = 0;
  let answeredBytes = 0;
  const sockets = new Set<Socket>();
  const track = (s: Socket): void => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => {});
  };

  // Half-open allowed, so a client's FIN can be passed on as it is under 'slow-close'.
  const server: Server = createServer({ allowHalfOpen: true }, (client) => {
    accepted += 1;
    track(client);
    const upstream = connect({ host: target.host, port: target.port });
    track(upstream);
    /** The fault this connection is under, taken when the client last sent a chunk. */
    let mode: ProxyFault | null = null;
    let answered = 0;
    let toUpstream = Promise.resolve();
    let toClient = Promise.resolve();
    const later = (chain: Promise<void>, ms: number, to: Socket, chunk: Buffer): Promise<void> =>
      chain.then(() => new Promise<void>((r) => setTimeout(r, ms))).then(() => void (to.destroyed || to.write(chunk)));
    const close = (): void => {
      if (mode?.kind === 'hang' || mode?.kind === 'half-open') return; // the point: nobody hears of it
      client.end();
      upstream.destroy();
    };
    client.on('close', () => upstream.destroy());
    // Delayed chunks still on their way are delivered before the close.
    upstream.on('close', () => void toClient.then(() => (mode?.kind === 'slow-close' ? setTimeout(close, mode.ms) : close())));
    client.on('end', () => {
      if (mode?.kind === 'slow-close') upstream.end();
      // Otherwise as a socket that does not allow half-open: the client's FIN is answered with one.
      else client.end();
    });

    client.on('data', (chunk: Buffer) => {
      if (mode?.kind !== 'hang' && mode?.kind !== 'half-open') {
        mode = fault;
        answered = 0;
      }
      switch (mode?.kind) {
        case 'hang':
          return;
        case 'reset':
          upstream.destroy();
          client.resetAndDestroy();
          return;
        case 'latency':
          toUpstream = later(toUpstream, mode.ms, upstream, chunk);
          return;
        default:
          upstream.write(chunk);
      }
    });

    upstream.on('data', (chunk: Buffer) => {
      answeredBytes += chunk.length;
      switch (mode?.kind) {
        case 'half-open':
        case 'hang':
          return;
        case 'latency':
          toClient = later(toClient, mode.ms, client, chunk);
          return;
        case 'reset-mid-response':
        case 'truncate': {
          const room = mode.afterBytes - answered;
          if (room > 0) client.write(chunk.subarray(0, room));
          answered += chunk.length;
          if (answered >= mode.afterBytes) {
            upstream.destroy();
            if (mode.kind === 'truncate') client.end();
            else client.resetAndDestroy();
          }
          return;
        }
        default:
          // Flow control, as a network path has: what the client has not read holds the part back.
          if (!client.write(chunk)) {
            upstream.pause();
            client.once('drain', () => upstream.resume());
          }
      }
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    host: '127.0.0.1',
    port,
    url: `http://127.0.0.1:${port}`,
    setFault(f) {
      fault = f;
    },
    get accepted() {
      return accepted;
    },
    get answeredBytes() {
      return answeredBytes;
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
