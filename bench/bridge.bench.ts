/**
 * Bridge benchmark. Each ratio is measured against its baseline in the same run:
 * - bridge_cold_start (spawn → `initialize` answered by the core, not by the bridge) against
 *   node_bare_start (`node -e 0`) and against mcp-remote's cold start to a local HTTP MCP server,
 *   all started alternately (one of each per round) so that all see the same machine; beside them
 *   node_net_start, a script that only loads node:net (bench/fixtures/net-floor.mjs): the floor for a
 *   socket relay;
 * - relay_overhead (call_via_bridge − call_via_socket, per percentile) against call_via_socket, for
 *   an `echo` tool that does no work (0.1 ms: the strictest reading, where any process hop dominates),
 *   and against mcp-remote's added latency over a direct Streamable HTTP client; beside it the same
 *   call through bench/fixtures/pipe-relay.ts, a relay that only pipes bytes (the floor for Node), and,
 *   when a C compiler is present, through bench/fixtures/native-relay.c (the floor for any relay);
 * - governed_call_via_bridge against governed_call_via_socket: the same relay in front of a fixture
 *   tool that takes about as long as a governed call (GOVERNED_MS, default 20 ms: the broker's tier-1
 *   call is 20-80 ms here), calls on the two paths alternating. This is a stand-in for a real call;
 *   bench/run.ts measures the real one (the whole core against the lab) with relayAgainstCore;
 * - the bridge's peak RSS (VmHWM) against mcp-remote's, and the floor under it: the peak RSS of a bare
 *   `node` that holds its stdin open and does nothing else.
 * Both sides of each comparison are driven by the same raw newline-JSON client, so only the relay differs.
 *
 * Run alone: `node bench/bridge.bench.ts` (builds the bridge into a temp dir, prints JSON).
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { CallToolRequestSchema, ListToolsRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { LineSplitter } from '../common/handshake.ts';
import { resolvePaths } from '../common/paths.ts';
import { connectOnce } from '../bridge/core-connection.ts';
import type { ToolHost } from '../main/core/connectors/types.ts';
import { startSocketServer } from '../main/core/mcp/socket-server.ts';
import { goal, plain, ratioOf, type Figures } from './figures.ts';

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
}

const ROOT = fileURLToPath(new URL('../', import.meta.url));
const MCP_REMOTE = join(ROOT, 'node_modules/mcp-remote/dist/proxy.js');
const PIPE_RELAY = join(ROOT, 'bench/fixtures/pipe-relay.ts');
const NET_FLOOR = join(ROOT, 'bench/fixtures/net-floor.mjs');
const NATIVE_RELAY = join(ROOT, 'bench/fixtures/native-relay.ts');
const NATIVE_RELAY_C = join(ROOT, 'bench/fixtures/native-relay.c');
const INIT = (id: number | string) => ({
  jsonrpc: '2.0',
  id,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench', version: '0' } },
});
const ECHO = (id: number) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'echo', arguments: { text: 'ping' } } });

const GOVERNED_MS = Number(process.env.GOVERNED_MS ?? 20);
const GOVERNED = (id: number) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'governed', arguments: { text: 'ping' } } });

/**
 * `echo` answers at once; `governed` stands in for a governed call: it waits GOVERNED_MS (the
 * exchange, Vault and database round trips) and returns a result the size of a small query's.
 */
const echoHost: ToolHost = {
  async listTools() {
    return [
      { name: 'echo', inputSchema: { type: 'object', properties: { text: { type: 'string' } } } },
      { name: 'governed', inputSchema: { type: 'object', properties: { text: { type: 'string' } } } },
    ];
  },
  async callTool(request) {
    if (request.name === 'governed') {
      await new Promise((resolve) => setTimeout(resolve, GOVERNED_MS));
      const rows = Array.from({ length: 5 }, (_, i) => ({ id: i + 1, full_name: `Patient ${i + 1}`, mrn: `MRN-${1000 + i}` }));
      return { content: [{ type: 'text', text: JSON.stringify({ rows, rowCount: rows.length }) }] };
    }
    return { content: [{ type: 'text', text: String(request.args.text) }] };
  },
  onToolsChanged: () => () => {},
};

export function percentiles(samples: number[]): Percentiles {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => round(s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN);
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

/** A raw newline-JSON client over any pair of streams: the same one for socket, bridge and mcp-remote. */
function lineClient(readable: Readable, writable: Writable) {
  const waiting = new Map<string | number, (m: Record<string, unknown>) => void>();
  const splitter = new LineSplitter({
    maxLineBytes: 1 << 24,
    onLine: (line) => {
      const m = JSON.parse(line) as Record<string, unknown>;
      const id = m.id as string | number;
      const w = waiting.get(id);
      if (w && !('method' in m)) {
        waiting.delete(id);
        w(m);
      }
    },
  });
  readable.on('data', (c: Buffer) => splitter.push(c));
  return {
    request(message: { id: string | number }, timeoutMs = 30_000): Promise<Record<string, unknown>> {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('bench: no answer')), timeoutMs);
        waiting.set(message.id, (m) => {
          clearTimeout(t);
          resolve(m);
        });
        writable.write(JSON.stringify(message) + '\n');
      });
    },
    notify(method: string) {
      writable.write(JSON.stringify({ jsonrpc: '2.0', method }) + '\n');
    },
  };
}

/**
 * The relay in front of any running core: a client straight on its socket and a client through a
 * freshly spawned bridge send the same `call`, alternating one by one so both paths see the same
 * machine. Returns both latencies and their difference per percentile.
 */
export async function relayAgainstCore(options: {
  paths: { socketPath: string; secretPath: string };
  bridgePath: string;
  env: Record<string, string>;
  call: (id: number) => { id: number };
  calls: number;
  warmup?: number;
}): Promise<{ via_socket: Percentiles; via_bridge: Percentiles; overhead: Percentiles }> {
  const { socket } = await connectOnce(options.paths);
  const child = spawn(process.execPath, [options.bridgePath], { env: options.env, stdio: ['pipe', 'pipe', 'ignore'] });
  try {
    const direct = lineClient(socket, socket);
    const bridged = lineClient(child.stdout!, child.stdin!);
    for (const c of [direct, bridged]) {
      await c.request(INIT(0));
      c.notify('notifications/initialized');
    }
    const viaSocket: number[] = [];
    const viaBridge: number[] = [];
    const warmup = options.warmup ?? 10;
    for (let i = 0; i < warmup + options.calls; i++) {
      for (const [c, out] of i % 2 === 0 ? ([[direct, viaSocket], [bridged, viaBridge]] as const) : ([[bridged, viaBridge], [direct, viaSocket]] as const)) {
        const t0 = performance.now();
        const answer = await c.request(options.call(10_000 + i));
        if (!answer.result || (answer.result as { isError?: boolean }).isError) throw new Error('bench: the call failed');
        if (i >= warmup) out.push(performance.now() - t0);
      }
    }
    const via_socket = percentiles(viaSocket);
    const via_bridge = percentiles(viaBridge);
    return { via_socket, via_bridge, overhead: diff(via_bridge, via_socket) };
  } finally {
    socket.destroy();
    await stop(child);
  }
}

/**
 * Times `n` calls on each path (after `warmup`), one call per path in turn and the order rotated each
 * round, so a burst of load on the shared machine falls on every path alike.
 */
async function interleaved(paths: Record<string, (id: number) => Promise<unknown>>, n: number, warmup = 20): Promise<Record<string, number[]>> {
  const names = Object.keys(paths);
  const out: Record<string, number[]> = Object.fromEntries(names.map((k) => [k, []]));
  for (let i = 0; i < warmup + n; i++) {
    for (let j = 0; j < names.length; j++) {
      const name = names[(i + j) % names.length]!;
      const t0 = performance.now();
      await paths[name]!(1000 + i);
      if (i >= warmup) out[name]!.push(performance.now() - t0);
    }
  }
  return out;
}

function expectResult(answer: Record<string, unknown>): void {
  if (!answer.result) throw new Error('bench: echo failed');
}

function peakRssMb(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? round(Number(m[1]) / 1024) : NaN;
}

/** Peak RSS of a bare `node` with nothing to do but hold its stdin open: what any Node-run bridge starts from. */
async function bareNodePeakRssMb(): Promise<number> {
  const child = spawn(process.execPath, ['-e', "process.stdin.once('data', () => process.exit(0)); process.stdout.write('up')"], {
    stdio: ['pipe', 'pipe', 'ignore'],
  });
  await new Promise((resolve) => child.stdout!.once('data', resolve));
  const mb = peakRssMb(child.pid!);
  await stop(child);
  return mb;
}

/** Compiles bench/fixtures/native-relay.c into `dir` with the machine's `cc`; undefined when there is none. */
function compileNativeRelay(dir: string): string | undefined {
  const bin = join(dir, 'native-relay');
  try {
    execFileSync('cc', ['-O2', '-o', bin, NATIVE_RELAY_C], { stdio: 'ignore' });
    return bin;
  } catch {
    return undefined;
  }
}

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

async function httpMcpServer(): Promise<{ url: string; close(): Promise<void> }> {
  const http: HttpServer = createServer(async (req: IncomingMessage, res) => {
    const server = new Server({ name: 'bench-http', version: '0' }, { capabilities: { tools: {} } });
    server.setRequestHandler(ListToolsRequestSchema, async () => ({ tools: await echoHost.listTools() }));
    server.setRequestHandler(CallToolRequestSchema, async (r) => ({ content: [{ type: 'text', text: String(r.params.arguments?.text) }] }));
    const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    res.on('close', () => void transport.close());
    await server.connect(transport);
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined;
    await transport.handleRequest(req, res, body);
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const { port } = http.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    close: () => new Promise<void>((r) => http.close(() => r())),
  };
}

/** Bundles the bridge into `dir` with the project's build script, as `npm run build:bridge` does. */
export function buildBridgeInto(dir: string): string {
  const bridgePath = join(dir, 'bridge.mjs');
  execFileSync(process.execPath, [join(ROOT, 'scripts/build-bridge.mjs'), '--outfile', bridgePath], { stdio: 'pipe' });
  return bridgePath;
}

/** How many of the echo calls count as the bridge's first, cold ones (a detail beside the whole run). */
const FIRST_CALLS = 300;
/** Echo calls timed on each path, after 20 unmeasured. */
const ECHO_CALLS = 1500;

export async function benchBridge(options: { starts?: number; calls?: number; echoCalls?: number } = {}): Promise<Record<string, Percentiles>> {
  const starts = options.starts ?? 30;
  const calls = options.calls ?? 300;
  // The echo comparison runs long enough for V8 to have compiled the bridge's per-message code: over
  // its first few hundred calls a fresh bridge runs it in V8's interpreter, and a median over those
  // alone reads the compiler's warm-up (1.11-1.43 at 300 calls in six runs, 0.99-1.05 at 1,500 in
  // three). The first FIRST_CALLS are reported on their own as well.
  const echoCalls = options.echoCalls ?? ECHO_CALLS;
  const work = mkdtempSync(join(tmpdir(), 'cs-bench-bridge-'));
  const bridgePath = buildBridgeInto(work);
  const home = join(work, 'home');
  const paths = resolvePaths({ platform: process.platform, env: { COUNTERSIGN_HOME: home }, home });
  const core = await startSocketServer({ paths, toolHost: echoHost, log: { info() {}, warn() {}, error() {} } });
  const env = { PATH: process.env.PATH ?? '', COUNTERSIGN_HOME: home, COUNTERSIGN_APP_CMD: '[]' };
  // mcp-remote, the peer stdio bridge, in front of a local Streamable HTTP MCP server (when installed)
  const peer = existsSync(MCP_REMOTE)
    ? { http: await httpMcpServer(), env: { PATH: process.env.PATH ?? '', MCP_REMOTE_CONFIG_DIR: join(work, 'mcp-auth'), HOME: work } }
    : undefined;
  const result: Record<string, Percentiles> = {};
  try {
    // node -e 0, the floor any Node-based bridge starts from, a script that only loads node:net, the
    // bridge's spawn → initialize answered by the core (the bridge's own offline answer carries other
    // instructions) and mcp-remote's spawn → initialize answered by its server, one of each per round,
    // so the machine's state at any moment weighs on all of them alike
    const bare: number[] = [];
    const net: number[] = [];
    const cold: number[] = [];
    const peerCold: number[] = [];
    for (let i = 0; i < starts; i++) {
      const b0 = performance.now();
      execFileSync(process.execPath, ['-e', '0']);
      bare.push(performance.now() - b0);
      const n0 = performance.now();
      execFileSync(process.execPath, [NET_FLOOR]);
      net.push(performance.now() - n0);
      const t0 = performance.now();
      const child = spawn(process.execPath, [bridgePath], { env, stdio: ['pipe', 'pipe', 'ignore'] });
      const client = lineClient(child.stdout!, child.stdin!);
      const answer = await client.request(INIT(0));
      cold.push(performance.now() - t0);
      const instructions = (answer.result as { instructions?: string } | undefined)?.instructions ?? '';
      if (/not running/.test(instructions)) throw new Error('bench: initialize was answered by the bridge, not the core');
      await stop(child);
      if (peer) {
        const p0 = performance.now();
        const remote = spawn(process.execPath, [MCP_REMOTE, peer.http.url, '--transport', 'http-only'], { env: peer.env, stdio: ['pipe', 'pipe', 'ignore'] });
        await lineClient(remote.stdout!, remote.stdin!).request(INIT(0));
        peerCold.push(performance.now() - p0);
        await stop(remote);
      }
    }
    result.node_bare_start = percentiles(bare);
    result.node_net_start = percentiles(net);
    result.bridge_cold_start = percentiles(cold);

    // The same raw client straight on the core's socket, through the bridge, and through the least a
    // relay can be: in Node (bench/fixtures/pipe-relay.ts) and, when there is a C compiler, in any
    // language (bench/fixtures/native-relay.c). One call on each path in turn, so that all of them see
    // the same machine.
    const { socket } = await connectOnce(paths);
    const child = spawn(process.execPath, [bridgePath], { env, stdio: ['pipe', 'pipe', 'ignore'] });
    const relayEnv = { ...env, PIPE_RELAY_SOCKET: paths.socketPath, PIPE_RELAY_SECRET: paths.secretPath };
    const pipe = spawn(process.execPath, [PIPE_RELAY], { env: relayEnv, stdio: ['pipe', 'pipe', 'ignore'] });
    const nativeBin = compileNativeRelay(work);
    const native = nativeBin
      ? spawn(process.execPath, [NATIVE_RELAY], { env: { ...relayEnv, NATIVE_RELAY_BIN: nativeBin }, stdio: ['pipe', 'pipe', 'ignore'] })
      : undefined;
    try {
      const clients: Record<string, ReturnType<typeof lineClient>> = {
        socket: lineClient(socket, socket),
        bridge: lineClient(child.stdout!, child.stdin!),
        pipe: lineClient(pipe.stdout!, pipe.stdin!),
        ...(native ? { native: lineClient(native.stdout!, native.stdin!) } : {}),
      };
      for (const c of Object.values(clients)) {
        await c.request(INIT(0));
        c.notify('notifications/initialized');
      }
      const timed = await interleaved(
        Object.fromEntries(Object.entries(clients).map(([k, c]) => [k, (id: number) => c.request(ECHO(id)).then(expectResult)])),
        echoCalls,
      );
      result.call_via_socket = percentiles(timed.socket!);
      result.call_via_bridge = percentiles(timed.bridge!);
      result.call_via_pipe_relay = percentiles(timed.pipe!);
      result.first_calls_via_bridge = percentiles(timed.bridge!.slice(0, FIRST_CALLS));
      result.first_calls_via_pipe_relay = percentiles(timed.pipe!.slice(0, FIRST_CALLS));
      if (timed.native) result.call_via_native_relay = percentiles(timed.native);
      result.relay_overhead = diff(result.call_via_bridge, result.call_via_socket);
      result.bridge_peak_rss_mb = same(peakRssMb(child.pid!));
    } finally {
      socket.destroy();
      await stop(child);
      await stop(pipe);
      if (native) await stop(native);
    }
    result.node_bare_peak_rss_mb = same(await bareNodePeakRssMb());

    // the same relay in front of a call that takes as long as a governed one
    const governed = await relayAgainstCore({ paths, bridgePath, env, call: GOVERNED, calls: Math.max(20, Math.round(calls / 3)) });
    result.governed_fixture_call_via_socket = governed.via_socket;
    result.governed_fixture_call_via_bridge = governed.via_bridge;

    if (peer) {
      result.peer_mcp_remote_cold_start = percentiles(peerCold);
      Object.assign(result, await benchMcpRemote(peer, calls));
    }
  } finally {
    await peer?.http.close();
    await core.close();
    rmSync(work, { recursive: true, force: true });
  }
  return result;
}

/** mcp-remote's calls and memory against a direct HTTP client of the same server (its cold start is timed beside the bridge's). */
async function benchMcpRemote(peer: { http: { url: string }; env: Record<string, string> }, calls: number): Promise<Record<string, Percentiles>> {
  const { http, env } = peer;
  const out: Record<string, Percentiles> = {};
  // a direct HTTP client (the SDK's Streamable HTTP client) and mcp-remote relaying to the same
  // server, one call each in turn
  const direct = new Client({ name: 'bench', version: '0' });
  await direct.connect(new StreamableHTTPClientTransport(new URL(http.url)));
  const child = spawn(process.execPath, [MCP_REMOTE, http.url, '--transport', 'http-only'], { env, stdio: ['pipe', 'pipe', 'ignore'] });
  try {
    const client = lineClient(child.stdout!, child.stdin!);
    await client.request(INIT(0));
    client.notify('notifications/initialized');
    const timed = await interleaved(
      {
        http: () => direct.callTool({ name: 'echo', arguments: { text: 'ping' } }),
        mcpRemote: (id) => client.request(ECHO(id)).then(expectResult),
      },
      calls,
    );
    out.peer_direct_http_call = percentiles(timed.http!);
    out.peer_mcp_remote_call = percentiles(timed.mcpRemote!);
    out.peer_mcp_remote_added_latency = diff(out.peer_mcp_remote_call, out.peer_direct_http_call);
    out.peer_mcp_remote_rss_mb = same(peakRssMb(child.pid!));
  } finally {
    await direct.close();
    await stop(child);
  }
  return out;
}

function diff(a: Percentiles, b: Percentiles): Percentiles {
  return { p50: round(a.p50 - b.p50), p95: round(a.p95 - b.p95), p99: round(a.p99 - b.p99) };
}

function same(n: number): Percentiles {
  return { p50: n, p95: n, p99: n };
}

/** The bridge's figures for bench/run.ts, each held to its goal against a floor measured in the same run. */
export async function bench(): Promise<Figures> {
  const r = await benchBridge();
  const p50 = (k: string): number | undefined => r[k]?.p50;
  const f: Figures = {
    node_bare_start: plain(r.node_bare_start, 'ms', '`node -e 0` from spawn to exit: the floor under any bridge Node starts'),
    node_net_start: plain(r.node_net_start, 'ms', 'a script that only loads node:net, from spawn to exit (bench/fixtures/net-floor.mjs): the floor under any Node relay to a local socket'),
    bridge_cold_start: plain(r.bridge_cold_start, 'ms', 'the bridge from spawn until the core answers initialize'),
    bridge_cold_start_vs_node_bare: goal(ratioOf(p50('bridge_cold_start'), p50('node_bare_start')), 'ratio', '<=', 1.5, 'bridge cold start over `node -e 0`, started alternately (p50)'),
    node_net_start_vs_node_bare: plain(ratioOf(p50('node_net_start'), p50('node_bare_start')), 'ratio', 'loading node:net over `node -e 0` (p50): what any Node socket relay starts from, before its own work'),
    call_via_socket: plain(r.call_via_socket, 'ms', 'an echo-tool call straight on the core socket'),
    call_via_bridge: plain(r.call_via_bridge, 'ms', 'the same call through the bridge'),
    call_via_pipe_relay: plain(r.call_via_pipe_relay, 'ms', 'the same call through a relay that only pipes bytes after the handshake (bench/fixtures/pipe-relay.ts): the floor for a relay Node runs'),
    call_via_native_relay: plain(r.call_via_native_relay, 'ms', 'the same call through a C poll loop that copies bytes (bench/fixtures/native-relay.c): the floor for any stdio relay'),
    relay_overhead: plain(r.relay_overhead, 'ms', 'call_via_bridge minus call_via_socket, per percentile'),
    bridge_call_vs_pipe_relay: goal(
      ratioOf(p50('call_via_bridge'), p50('call_via_pipe_relay')),
      'ratio',
      '<=',
      1.1,
      `an echo call through the bridge over the same call through the byte-piping relay, called in turn, ${ECHO_CALLS.toLocaleString('en-US')} calls on each path after 20 unmeasured (p50): what the bridge adds over the least a Node relay can be`,
    ),
    bridge_first_calls_vs_pipe_relay: plain(
      ratioOf(p50('first_calls_via_bridge'), p50('first_calls_via_pipe_relay')),
      'ratio',
      `the same over the first ${FIRST_CALLS} calls of the run alone (p50): a fresh bridge, its per-message code still in V8's interpreter (a detail: a Claude Desktop session that makes fewer calls sees this)`,
    ),
    bridge_call_vs_socket: plain(ratioOf(p50('call_via_bridge'), p50('call_via_socket')), 'ratio', 'the echo call through the bridge over the same on the socket (p50): the process hop itself, which no stdio relay avoids (see native_relay_call_vs_socket)'),
    pipe_relay_call_vs_socket: plain(ratioOf(p50('call_via_pipe_relay'), p50('call_via_socket')), 'ratio', 'the byte-piping relay over the socket (p50): the floor for a Node relay'),
    native_relay_call_vs_socket: plain(ratioOf(p50('call_via_native_relay'), p50('call_via_socket')), 'ratio', 'the C relay over the socket (p50): the floor for any stdio relay'),
    governed_fixture_call_via_socket: plain(r.governed_fixture_call_via_socket, 'ms', `a fixture tool that waits ${GOVERNED_MS} ms, straight on the socket`),
    governed_fixture_call_via_bridge: plain(r.governed_fixture_call_via_bridge, 'ms', 'the same through the bridge'),
    bridge_governed_fixture_call_vs_socket: goal(
      ratioOf(p50('governed_fixture_call_via_bridge'), p50('governed_fixture_call_via_socket')),
      'ratio',
      '<=',
      1.2,
      `a fixture tool that waits ${GOVERNED_MS} ms through the bridge over the same on the socket, alternating (p50): a stand-in; bridge_tier1_call_vs_socket is the real call`,
    ),
    'rss_mb.bridge': plain(p50('bridge_peak_rss_mb'), 'MB', "the bridge's peak resident memory (VmHWM) after relaying every echo call"),
    'rss_mb.node_bare': plain(p50('node_bare_peak_rss_mb'), 'MB', 'the peak resident memory of a bare `node` holding its stdin open: the floor'),
    bridge_rss_vs_node_bare: goal(ratioOf(p50('bridge_peak_rss_mb'), p50('node_bare_peak_rss_mb')), 'ratio', '<=', 1.25, "the bridge's peak RSS over a bare node's holding stdin"),
  };
  if (!r.call_via_native_relay) f.call_via_native_relay!.missing = f.native_relay_call_vs_socket!.missing = 'no C compiler (cc) on this machine';
  const peer = 'mcp-remote is not installed (node_modules/mcp-remote)';
  Object.assign(f, {
    peer_mcp_remote_cold_start: plain(r.peer_mcp_remote_cold_start, 'ms', 'mcp-remote, a widely used stdio bridge, from spawn to initialize answered by a local HTTP MCP server'),
    peer_mcp_remote_added_latency: plain(r.peer_mcp_remote_added_latency, 'ms', "mcp-remote's echo call minus a direct HTTP client's, per percentile"),
    'rss_mb.peer_mcp_remote': plain(p50('peer_mcp_remote_rss_mb'), 'MB', "mcp-remote's peak resident memory"),
    bridge_cold_start_vs_mcp_remote: goal(ratioOf(p50('bridge_cold_start'), p50('peer_mcp_remote_cold_start')), 'ratio', '<=', 0.15, "bridge cold start over mcp-remote's, started alternately (p50)"),
    node_net_start_vs_mcp_remote: plain(
      ratioOf(p50('node_net_start'), p50('peer_mcp_remote_cold_start')),
      'ratio',
      "node_net_start over mcp-remote's cold start, in the same rounds (p50): the floor under bridge_cold_start_vs_mcp_remote (goal 0.15) for any relay Node runs to a local socket",
    ),
    relay_overhead_vs_mcp_remote: goal(ratioOf(p50('relay_overhead'), p50('peer_mcp_remote_added_latency')), 'ratio', '<=', 0.25, "the bridge's added latency over mcp-remote's (p50)"),
    bridge_rss_vs_mcp_remote: plain(ratioOf(p50('bridge_peak_rss_mb'), p50('peer_mcp_remote_rss_mb')), 'ratio', "the bridge's peak RSS over mcp-remote's (a bare node is above a quarter of it: bridge_rss_vs_node_bare is the goal)"),
  });
  if (!r.peer_mcp_remote_cold_start) for (const k of ['peer_mcp_remote_cold_start', 'peer_mcp_remote_added_latency', 'rss_mb.peer_mcp_remote', 'bridge_cold_start_vs_mcp_remote', 'node_net_start_vs_mcp_remote', 'relay_overhead_vs_mcp_remote', 'bridge_rss_vs_mcp_remote']) f[k]!.missing = peer;
  return f;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const f = await bench();
  console.log(JSON.stringify(Object.fromEntries(Object.entries(f).map(([k, x]) => [k, x.goal ? { value: x.value, goal: x.goal, met: x.met } : x.value])), null, 2));
}
