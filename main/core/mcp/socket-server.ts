/**
 * The core's local socket: the one door through which bridges (and so Claude Desktop) reach the core.
 *
 * - The socket lives in an owner-only directory (0700); the core refuses to start (SOCKET_UNSAFE) when
 *   the directory belongs to another user or is open to others, and says which.
 * - One core per user: the core takes core.lock (core-lock.ts) before it touches the socket or the
 *   secret, so of two cores started at the same instant exactly one runs and the other refuses
 *   (ALREADY_RUNNING); a lock or socket file left by a core that died is stale and replaced.
 * - A fresh secret is written 0600 at every start; each connection must pass the mutual HMAC
 *   challenge-response of common/handshake.ts before any MCP byte is read.
 * - Each authenticated connection gets its own MCP server backed by the ToolHost (mcp-session.ts).
 */
import { createHmac, randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, rm, writeFile, rename } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { AppError } from '../../../common/errors.ts';
import {
  HANDSHAKE_TIMEOUT_MS,
  HANDSHAKE_VERSION,
  LineSplitter,
  MAX_HANDSHAKE_LINE,
  constantTimeEqual,
  clientProof,
  encodeLine,
  parseHello,
  parseProof,
  serverProof,
  type Hmac,
} from '../../../common/handshake.ts';
import type { CountersignPaths } from '../../../common/paths.ts';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import type { ToolHost } from '../connectors/types.ts';
import { acquireCoreLock, type CoreLock } from './core-lock.ts';
import { startMcpSession, type McpSession, type SessionInfo } from './mcp-session.ts';
import { peerOf } from './peer.ts';
import { SocketTransport } from './socket-transport.ts';

/** The logging surface the socket server needs; `console` satisfies it. Never given a secret. */
export interface Log {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export interface SocketServerOptions {
  paths: Pick<CountersignPaths, 'runDir' | 'socketPath' | 'secretPath'>;
  toolHost: ToolHost;
  /** Called once a connection has initialized: who connected (clientInfo is self-asserted). */
  onSession?: (session: SessionInfo) => void;
  log: Log;
  serverInfo?: { name: string; version: string };
  /** The lock taken by `takeCoreLock` before anything else started; taken here otherwise. Released on close. */
  lock?: CoreLock;
  /** Called with each session's tool list as it is handed out (for the catalogue watch). */
  onListed?: (sessionId: string, tools: readonly Tool[]) => void;
  onSessionClosed?: (sessionId: string) => void;
  /** How long a call may run before the core answers it with a time-out (mcp-session.ts CALL_DEADLINE_MS). */
  callDeadlineMs?: number;
  /** Answers control connections (common/handshake.ts, `countersign open`); without it they are refused. */
  control?: (method: string) => Promise<Record<string, unknown>>;
}

export interface SocketServer {
  readonly socketPath: string;
  /** Sessions currently connected. */
  sessions(): SessionInfo[];
  /** Stops listening, ends every session (their calls see their AbortSignal fire) and removes the socket and secret. */
  close(): Promise<void>;
}

export const hmacSha256: Hmac = (keyHex, data) => createHmac('sha256', Buffer.from(keyHex, 'hex')).update(data).digest('hex');

/**
 * One core per user: the lock in the (owner-only) run directory. The core takes it before anything
 * else, so a second core started at the same instant stops before it opens the audit store or touches
 * the sign-in (two cores refreshing the same rotating refresh token would sign the person out).
 */
export async function takeCoreLock(paths: Pick<CountersignPaths, 'runDir'>): Promise<CoreLock> {
  if (process.platform !== 'win32') await ensureOwnerOnlyDir(paths.runDir);
  else await mkdir(paths.runDir, { recursive: true });
  return acquireCoreLock(paths.runDir);
}

export async function startSocketServer(options: SocketServerOptions): Promise<SocketServer> {
  const { paths, log } = options;
  const windows = process.platform === 'win32';
  const lock = options.lock ?? (await takeCoreLock(paths));
  const secret = randomBytes(32).toString('hex');
  try {
    await refuseIfRunning(paths.socketPath);
    await writeSecret(paths.secretPath, secret);
  } catch (error) {
    await lock.release();
    throw error;
  }

  const sockets = new Set<Socket>();
  const sessions = new Map<string, McpSession>();
  const server = createServer({ pauseOnConnect: false }, (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    accept(socket).catch(() => socket.destroy());
  });

  async function accept(socket: Socket): Promise<void> {
    const result = await handshake(socket, secret);
    if (!result.ok) {
      log.warn('socket: refused a connection that failed the handshake', { reason: result.reason });
      return;
    }
    if (result.purpose === 'control') return serveControl(socket, result.leftover);
    const transport = new SocketTransport(socket, { leftover: result.leftover });
    const session = await startMcpSession({
      transport,
      toolHost: options.toolHost,
      peer: () => peerOf(socket),
      serverInfo: options.serverInfo ?? { name: 'countersign', version: '0.1.0' },
      onInitialized: (info) => {
        log.info('socket: session initialized', { session: info.sessionId, client: info.client });
        options.onSession?.(info);
      },
      onClosed: (id) => {
        sessions.delete(id);
        options.onSessionClosed?.(id);
      },
      ...(options.onListed ? { onListed: options.onListed } : {}),
      ...(options.callDeadlineMs !== undefined ? { callDeadlineMs: options.callDeadlineMs } : {}),
    });
    sessions.set(session.info.sessionId, session);
  }

  /** One request per line, one answer per request; `{code, message}` on failure, never a foreign error's text. */
  function serveControl(socket: Socket, leftover: Uint8Array[]): void {
    const splitter = new LineSplitter({
      maxLineBytes: MAX_HANDSHAKE_LINE,
      onOversize: () => socket.destroy(),
      onLine: (line) => {
        let request: { id?: unknown; method?: unknown };
        try {
          request = JSON.parse(line) as { id?: unknown; method?: unknown };
        } catch {
          socket.destroy();
          return;
        }
        const id = typeof request.id === 'number' || typeof request.id === 'string' ? request.id : null;
        const method = typeof request.method === 'string' ? request.method : '';
        const answer = options.control
          ? options.control(method).then(
              (result) => ({ id, result }),
              (error: unknown) => ({ id, error: AppError.from(error).toWire() }),
            )
          : Promise.resolve({ id, error: { code: 'INPUT_INVALID', message: 'This core answers no control requests.' } });
        void answer.then((reply) => {
          if (!socket.destroyed) socket.write(encodeLine(reply));
        });
      },
    });
    socket.on('data', (chunk: Buffer) => splitter.push(chunk));
    for (const chunk of leftover) splitter.push(chunk);
    log.info('socket: control connection');
  }

  try {
    await listen(server, paths.socketPath);
  } catch (error) {
    await rm(paths.secretPath, { force: true });
    await lock.release();
    throw error;
  }
  if (!windows) await chmod(paths.socketPath, 0o600).catch(() => {});
  log.info('socket: listening', { socketPath: paths.socketPath });

  let closing: Promise<void> | undefined;
  return {
    socketPath: paths.socketPath,
    sessions: () => [...sessions.values()].map((s) => s.info),
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        await Promise.allSettled([...sessions.values()].map((s) => s.close()));
        for (const socket of sockets) socket.destroy();
        await stopped;
        await rm(paths.secretPath, { force: true });
        if (!windows) await rm(paths.socketPath, { force: true });
        await lock.release();
      })();
      return closing;
    },
  };
}

/** Creates the run directory 0700, or refuses one that another user owns or that others can open. */
async function ensureOwnerOnlyDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const st = await lstat(dir);
  const uid = process.getuid?.();
  if (!st.isDirectory()) {
    throw new AppError('SOCKET_UNSAFE', `Countersign will not use ${dir} for its socket: it is not a directory.`);
  }
  if (uid !== undefined && st.uid !== uid) {
    throw new AppError(
      'SOCKET_UNSAFE',
      `Countersign will not use ${dir} for its socket: it belongs to another user (uid ${st.uid}). Remove it or set COUNTERSIGN_HOME.`,
    );
  }
  if ((st.mode & 0o077) !== 0) {
    throw new AppError(
      'SOCKET_UNSAFE',
      `Countersign will not use ${dir} for its socket: other users can open it (mode ${(st.mode & 0o777).toString(8)}). Run chmod 700 on it.`,
    );
  }
}

async function refuseIfRunning(socketPath: string): Promise<void> {
  const answered = await new Promise<boolean>((resolve) => {
    const probe = connect(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (answered) {
    throw new AppError('ALREADY_RUNNING', 'Countersign is already running for this user: only one core may own the session.');
  }
  if (process.platform !== 'win32') await rm(socketPath, { force: true });
}

async function writeSecret(secretPath: string, secret: string): Promise<void> {
  const tmp = `${secretPath}.${process.pid}.tmp`;
  await rm(tmp, { force: true });
  await writeFile(tmp, secret, { mode: 0o600, flag: 'wx' });
  await rename(tmp, secretPath);
}

function listen(server: Server, socketPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'EADDRINUSE'
          ? new AppError('ALREADY_RUNNING', 'Countersign is already running for this user: only one core may own the session.', { cause: error })
          : new AppError('SOCKET_UNSAFE', 'Countersign could not listen on its local socket.', { cause: error }),
      );
    });
    server.listen(socketPath, () => resolve());
  });
}

type HandshakeResult = { ok: true; leftover: Uint8Array[]; purpose?: 'control' } | { ok: false; reason: string };

/** The core's half of the handshake in common/handshake.ts. */
function handshake(socket: Socket, secret: string): Promise<HandshakeResult> {
  return new Promise((resolve) => {
    let clientNonce: string | undefined;
    let serverNonce: string | undefined;
    let purpose: 'control' | undefined;
    let done = false;
    const finish = (result: HandshakeResult, refusal?: { code: string; message: string }): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      if (!result.ok) {
        if (refusal && !socket.destroyed) socket.end(encodeLine({ t: 'countersign/refused', ...refusal }));
        else socket.destroy();
        setTimeout(() => socket.destroy(), 500).unref();
      }
      resolve(result);
    };
    const refuse = (reason: string): void =>
      finish({ ok: false, reason }, { code: 'HANDSHAKE_FAILED', message: 'Countersign refused this connection: the handshake failed.' });
    const splitter = new LineSplitter({
      maxLineBytes: MAX_HANDSHAKE_LINE,
      onOversize: () => refuse('oversized handshake line'),
      onLine: (line) => {
        if (done) return;
        if (clientNonce === undefined) {
          const hello = parseHello(line);
          if (!hello) return refuse('not a hello');
          clientNonce = hello.nonce;
          purpose = hello.purpose;
          serverNonce = randomBytes(32).toString('hex');
          socket.write(
            encodeLine({
              t: 'countersign/challenge',
              v: HANDSHAKE_VERSION,
              nonce: serverNonce,
              proof: serverProof(hmacSha256, secret, clientNonce, serverNonce),
            }),
          );
          return;
        }
        const proof = parseProof(line);
        const expected = clientProof(hmacSha256, secret, clientNonce, serverNonce!);
        if (!proof || !constantTimeEqual(proof.proof, expected)) return refuse('wrong proof');
        splitter.pause();
        socket.write(encodeLine({ t: 'countersign/welcome', v: HANDSHAKE_VERSION }));
        finish({ ok: true, leftover: splitter.takeRest(), ...(purpose ? { purpose } : {}) });
      },
    });
    const onData = (chunk: Buffer): void => splitter.push(chunk);
    const onClose = (): void => finish({ ok: false, reason: 'closed during handshake' });
    const timer = setTimeout(() => refuse('handshake timed out'), HANDSHAKE_TIMEOUT_MS);
    socket.on('data', onData);
    socket.on('close', onClose);
  });
}
