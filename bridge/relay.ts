/**
 * The stdio relay Claude Desktop launches. It holds no token and decides nothing: it carries MCP
 * messages between its stdio and the core's local socket, and keeps Claude's session alive across the
 * core's restarts.
 *
 * - Connects and passes the mutual handshake of common/handshake.ts; the core proves itself first.
 * - When nothing answers on the socket, starts the app (COUNTERSIGN_APP_CMD, a JSON array, else
 *   `countersign serve` next to the bridge) and waits a bounded time; if the app still does not answer,
 *   answers `initialize`, `tools/list` and `tools/call` itself with "Open Countersign and sign in", and
 *   keeps looking for the app in the background.
 * - When the connection drops: calls in flight fail with a JSON-RPC error; on reconnect it replays the
 *   client's `initialize` (and `notifications/initialized`), swallows the duplicate answer, and sends
 *   `notifications/tools/list_changed` so the client fetches the (possibly new) tool list.
 * - stdout carries only MCP messages; diagnostics go to stderr and to bridge.log in the log directory.
 *
 * Dependency-free (Node built-ins and common/ only) so that it starts about as fast as Node itself.
 */
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { LineSplitter, MAX_MESSAGE_BYTES, encodeLine } from '../common/handshake.ts';
import { ConnectError, connectOnce } from './core-connection.ts';
import { RESTARTED_MESSAGE, decoder, errorFor, isId, key, offlineAnswer, parseQueued, resultId, type Id, type Json } from './json-rpc.ts';

// Node's built-ins are taken with process.getBuiltinModule rather than static `import`s: an ES module
// that imports a built-in pays for wrapping all of its exports as a module namespace, at the bridge's
// start (docs/benchmarks.md, "Where the start went"). node:child_process is taken only to start the app.

const REPLAY_ID_PREFIX = 'countersign-bridge/replay/';
const MAX_QUEUED = 10_000;

/** What went to the core behind the handshake's proof: the replayed initialize's id, how many queued lines. */
interface SentEarly {
  replay?: string;
  lines: number;
}

export interface BridgeOptions {
  socketPath: string;
  secretPath: string;
  /** Command that starts the app when nothing answers; undefined: never start it. */
  appCommand?: string[];
  /** How long to wait for the app to answer after starting it or after losing it. */
  waitMs: number;
  stdin: Readable;
  stdout: Writable;
  /** Diagnostics (stderr and the log file); never given message contents. */
  log: (message: string) => void;
  /** Called when the bridge is done (stdin closed). */
  onExit?: (code: number) => void;
  /** Start-up timing marks (COUNTERSIGN_BRIDGE_TIMING=1): a step's name only, never message contents. */
  mark?: (step: string) => void;
  /** Called once, in a later turn, after the first answer from the core is passed on: off the start's path. */
  afterFirstAnswer?: () => void;
}

export function startBridge(options: BridgeOptions): { stop(): void } {
  const { log } = options;
  let socket: Socket | undefined;
  let state: 'connecting' | 'connected' | 'offline' = 'connecting';
  let initRequest: Json | undefined;
  let initDelivered = false;
  let sawInitialized = false;
  let replaySeq = 0;
  let pendingReplay: string | undefined;
  let lastSpawn = 0;
  let pollTimer: NodeJS.Timeout | undefined;
  let stopped = false;
  let firstAnswer = false;
  /** "connected to the core" is still to be logged, once the answer the client waits for is passed on. */
  let announce = false;
  const inflight = new Map<string, Id>();
  const queue: string[] = [];

  const out = (message: unknown): void => {
    if (!stopped) options.stdout.write(encodeLine(message));
  };
  const outLine = (line: string): void => {
    if (!stopped) options.stdout.write(line + '\n');
  };

  function stop(code: number): void {
    if (stopped) return;
    stopped = true;
    clearTimeout(pollTimer);
    socket?.destroy();
    options.onExit?.(code);
  }

  function onClientLine(line: string): void {
    let msg: Json | undefined;
    try {
      const value: unknown = JSON.parse(line);
      if (typeof value === 'object' && value !== null && !Array.isArray(value)) msg = value as Json;
    } catch {
      // forwarded as is: the core answers with a JSON-RPC parse error
    }
    if (msg && typeof msg.method === 'string') {
      if (msg.method === 'initialize' && isId(msg.id)) initRequest = msg;
      if (msg.method === 'notifications/initialized') sawInitialized = true;
    }
    if (state === 'connected') return forward(line, msg);
    if (state === 'connecting') {
      if (queue.length < MAX_QUEUED) queue.push(line);
      else if (msg && isId(msg.id)) out(errorFor(msg.id, 'Countersign is starting: too many requests are waiting.'));
      return;
    }
    answerOffline(msg);
    if (msg && isId(msg.id)) void attempt({ mayStartApp: true, holdRequests: false });
  }

  /** `sent`: the line already went to the core behind the handshake's proof; only the bookkeeping is left. */
  function forward(line: string, msg: Json | undefined, sent = false): void {
    if (msg && isId(msg.id) && typeof msg.method === 'string') {
      inflight.set(key(msg.id), msg.id);
      if (msg.method === 'initialize') initDelivered = true;
    }
    if (!sent) socket!.write(line + '\n');
  }

  function answerOffline(msg: Json | undefined): void {
    if (msg?.method === 'initialize' && isId(msg.id)) initDelivered = true;
    const answer = offlineAnswer(msg);
    if (answer) out(answer);
  }

  /**
   * A line from the core. The common one, a result (`{"result":…,"jsonrpc":"2.0","id":…}`, as the MCP
   * SDK writes it), is passed on as it came, its id read from its end: a large result is neither
   * parsed nor decoded and encoded again. Anything else goes through onCoreLine.
   */
  function onCoreBytes(bytes: Uint8Array): void {
    const id = pendingReplay === undefined ? resultId(bytes) : undefined;
    if (id === undefined) {
      onCoreLine(decoder.decode(bytes).trimEnd());
      return;
    }
    inflight.delete(key(id));
    if (!firstAnswer) firstAnswered();
    if (!stopped) options.stdout.write(bytes);
    announceConnected();
  }

  function firstAnswered(): void {
    firstAnswer = true;
    options.mark?.('first answer from the core');
    const after = options.afterFirstAnswer;
    if (after) setImmediate(after);
  }

  function announceConnected(): void {
    if (!announce) return;
    announce = false;
    log('connected to the core');
  }

  function onCoreLine(line: string): void {
    let msg: Json;
    try {
      msg = JSON.parse(line) as Json;
    } catch {
      log('dropped an unreadable line from the core');
      return;
    }
    if (isId(msg.id) && !('method' in msg)) {
      if (pendingReplay !== undefined && msg.id === pendingReplay) {
        pendingReplay = undefined;
        if ('error' in msg) log('the core refused the replayed initialize');
        else if (sawInitialized) socket?.write(encodeLine({ jsonrpc: '2.0', method: 'notifications/initialized' }));
        out({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' });
        announceConnected();
        return;
      }
      inflight.delete(key(msg.id));
    }
    if (!firstAnswer) firstAnswered();
    outLine(line);
    announceConnected();
  }

  /**
   * While the client's requests are held (start-up, reconnect), what onConnected would send first (the
   * replayed initialize, the queued lines) goes out behind the handshake's proof instead, a round trip
   * before the core's welcome. The queue keeps the lines until onConnected takes them, so a handshake
   * that fails after the proof leaves them for the next try.
   */
  function behindProof(sent: SentEarly): string {
    if (state !== 'connecting') return '';
    let bytes = '';
    if (initRequest && initDelivered) {
      sent.replay = `${REPLAY_ID_PREFIX}${++replaySeq}`;
      bytes += encodeLine({ ...initRequest, id: sent.replay });
    }
    sent.lines = queue.length;
    for (const line of queue) bytes += line + '\n';
    return bytes;
  }

  function onConnected(s: Socket, leftover: Uint8Array[], sent?: SentEarly): void {
    if (state === 'connected') {
      s.destroy();
      return;
    }
    socket = s;
    state = 'connected';
    clearTimeout(pollTimer);
    const splitter = new LineSplitter({ maxLineBytes: MAX_MESSAGE_BYTES, onLineBytes: onCoreBytes, onOversize: () => log('dropped an oversized line from the core') });
    s.on('data', (chunk: Buffer) => splitter.push(chunk));
    s.on('error', () => {});
    s.on('close', () => onDisconnected(s));
    if (sent?.replay !== undefined) pendingReplay = sent.replay;
    else if (initRequest && initDelivered) {
      pendingReplay = `${REPLAY_ID_PREFIX}${++replaySeq}`;
      s.write(encodeLine({ ...initRequest, id: pendingReplay }));
    }
    const alreadySent = sent?.lines ?? 0;
    queue.splice(0).forEach((line, i) => forward(line, parseQueued(line), i < alreadySent));
    // after the bookkeeping: with lines sent behind the proof, the core's first answers may already be here
    for (const chunk of leftover) splitter.push(chunk);
    // With the client waiting on an answer, logged once it is passed on: the log's write to stderr and
    // to its file would hold that answer up.
    if (inflight.size > 0 || pendingReplay !== undefined) announce = true;
    else log('connected to the core');
  }

  function onDisconnected(s: Socket): void {
    if (socket !== s || stopped) return;
    announceConnected();
    socket = undefined;
    pendingReplay = undefined;
    log('lost the connection to the core');
    for (const id of inflight.values()) out(errorFor(id, RESTARTED_MESSAGE));
    inflight.clear();
    state = 'connecting';
    void attempt({ mayStartApp: false, holdRequests: true });
  }

  let attempting: Promise<void> | undefined;
  /**
   * Tries to reach the core until `waitMs` passes. `holdRequests`: the client's requests wait for the
   * outcome (start-up, reconnect); otherwise they keep getting the offline answer meanwhile.
   */
  function attempt({ mayStartApp, holdRequests }: { mayStartApp: boolean; holdRequests: boolean }): Promise<void> {
    if (stopped || state === 'connected') return Promise.resolve();
    attempting ??= (async () => {
      if (holdRequests) state = 'connecting';
      const deadline = Date.now() + options.waitMs;
      let delay = 25;
      let started = false;
      for (;;) {
        try {
          const sent: SentEarly = { lines: 0 };
          const { socket: s, leftover } = await connectOnce({ ...options, behindProof: () => behindProof(sent) });
          if (stopped) {
            s.destroy();
            return;
          }
          onConnected(s, leftover, sent);
          return;
        } catch (error) {
          const absent = error instanceof ConnectError && error.absent;
          if (!absent) log(error instanceof ConnectError ? error.message : 'could not connect to the core');
          if (absent && mayStartApp && !started && Date.now() - lastSpawn > 30_000) {
            started = true;
            lastSpawn = Date.now();
            startApp(options.appCommand, log);
          }
          if (Date.now() >= deadline || stopped) break;
          await sleep(Math.min(delay, Math.max(0, deadline - Date.now())));
          delay = Math.min(delay * 2, 500);
        }
      }
      goOffline();
    })().finally(() => {
      attempting = undefined;
    });
    return attempting;
  }

  function goOffline(): void {
    if (stopped || state === 'connected') return;
    clearTimeout(pollTimer);
    state = 'offline';
    log('the core is not answering: answering the client with "Open Countersign and sign in"');
    for (const line of queue.splice(0)) {
      answerOffline(parseQueued(line));
    }
    const poll = (): void => {
      pollTimer = setTimeout(() => {
        if (state !== 'offline' || stopped) return;
        connectOnce(options).then(
          ({ socket: s, leftover }) => (stopped || state !== 'offline' ? s.destroy() : onConnected(s, leftover)),
          () => poll(),
        );
      }, 2000);
      pollTimer.unref();
    };
    poll();
  }

  // Connect first: the core works on the handshake while the bridge sets up its stdin.
  void attempt({ mayStartApp: true, holdRequests: true });
  const stdinSplitter = new LineSplitter({
    maxLineBytes: MAX_MESSAGE_BYTES,
    onLine: onClientLine,
    onOversize: (bytes) => {
      log(`dropped a ${bytes}-byte message from the client: over the limit`);
      out({ jsonrpc: '2.0', id: null, error: { code: -32600, message: 'The message is larger than Countersign accepts.' } });
    },
  });
  options.stdin.on('data', (chunk: Buffer) => stdinSplitter.push(chunk));
  options.stdin.on('end', () => stop(0));
  options.stdin.on('error', () => stop(0));
  return { stop: () => stop(0) };
}

function startApp(command: string[] | undefined, log: (m: string) => void): void {
  if (!command || command.length === 0) return;
  log('starting the app');
  try {
    const { spawn } = process.getBuiltinModule('node:child_process');
    const child = spawn(command[0]!, command.slice(1), { detached: true, stdio: 'ignore', windowsHide: true });
    child.on('error', () => log('could not start the app'));
    child.unref();
  } catch {
    log('could not start the app');
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

