import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { ToolListChangedNotificationSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { mcpConfigEntry } from '../../main/core/claude-desktop/config.ts';
import { startSocketServer, type SocketServer } from '../../main/core/mcp/socket-server.ts';
import type { SessionInfo } from '../../main/core/mcp/mcp-session.ts';
import { fixtureToolHost, type FixtureToolHost } from '../core/mcp/fixtures/tool-host.ts';
import { INIT, buildBridgeInto, quietLog, spawnRawBridge, tempHome } from './helpers.ts';

let buildDir: string;
let bridgePath: string;
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(() => {
  buildDir = mkdtempSync(join(tmpdir(), 'cs-bridge-build-'));
  bridgePath = buildBridgeInto(buildDir);
});
afterAll(() => rmSync(buildDir, { recursive: true, force: true }));
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function core(home = tempHome()): Promise<{ home: ReturnType<typeof tempHome>; host: FixtureToolHost; server: SocketServer; sessions: SessionInfo[] }> {
  const host = fixtureToolHost();
  const sessions: SessionInfo[] = [];
  const server = await startSocketServer({ paths: home.paths, toolHost: host, log: quietLog, onSession: (s) => sessions.push(s) });
  cleanups.push(() => home.cleanup());
  cleanups.push(() => server.close());
  return { home, host, server, sessions };
}

/** An MCP SDK client that spawns the bridge exactly as the generated Claude Desktop entry says. */
async function clientFor(home: string, extraEnv: Record<string, string> = {}): Promise<{ client: Client; transport: StdioClientTransport }> {
  const entry = mcpConfigEntry({ bridgePath, countersignHome: home });
  const transport = new StdioClientTransport({
    command: entry.command,
    args: entry.args,
    env: { ...getDefaultEnvironment(), ...entry.env, ...extraEnv },
    stderr: 'pipe',
  });
  const client = new Client({ name: 'countersign-test-client', version: '9.9.9' });
  await client.connect(transport);
  cleanups.push(() => client.close());
  return { client, transport };
}

function text(result: unknown): string {
  return ((result as CallToolResult).content[0] as { text: string }).text;
}

describe('bridge, spawned as Claude Desktop spawns it', () => {
  it('lists the core tools and calls one end to end, and the core records who connected', async () => {
    const { home, sessions, host } = await core();
    const { client, transport } = await clientFor(home.home);
    const { tools } = await client.listTools();
    expect(tools.map((t) => t.name)).toEqual(['echo', 'wait', 'fail']);
    const result = await client.callTool({ name: 'echo', arguments: { text: 'hello through the bridge' } });
    expect(text(result)).toBe('hello through the bridge');
    expect(client.getServerVersion()?.name).toBe('countersign');
    expect(sessions).toHaveLength(1);
    expect(sessions[0]!.client.name).toBe('countersign-test-client');
    expect(sessions[0]!.clientInfoSelfAsserted).toBe(true);
    expect(host.calls[0]!.client.name).toBe('countersign-test-client');
    // The peer the OS reports is the bridge process itself. The lookup (`ss`) runs beside the session
    // and a call waits for it at most 500 ms, so on a loaded machine the call may carry no pid: never
    // a wrong one, and the session learns it.
    expect([transport.pid, undefined]).toContain(host.calls[0]!.client.pid);
    await expect.poll(() => sessions[0]!.client.pid, { timeout: 10_000 }).toBe(transport.pid);
    expect(sessions[0]!.client.uid).toBe(process.getuid!());
  });

  it('reports a failure inside a tool as a result with isError and the reason', async () => {
    const { home } = await core();
    const { client } = await clientFor(home.home);
    const result = (await client.callTool({ name: 'fail', arguments: {} })) as CallToolResult;
    expect(result.isError).toBe(true);
    expect(text(result)).toMatch(/Vault is sealed/);
  });

  it('answers a call for an unknown tool with a JSON-RPC invalid-params error', async () => {
    const { home } = await core();
    const { client } = await clientFor(home.home);
    await expect(client.callTool({ name: 'no_such_tool', arguments: {} })).rejects.toMatchObject({ code: -32602 });
    expect(text(await client.callTool({ name: 'echo', arguments: { text: 'still here' } }))).toBe('still here');
  });

  it('serves ten bridges at once against one core', async () => {
    const { home, server } = await core();
    const clients = await Promise.all(Array.from({ length: 10 }, () => clientFor(home.home)));
    const results = await Promise.all(
      clients.map(({ client }, i) => client.callTool({ name: 'echo', arguments: { text: `bridge ${i}` } })),
    );
    expect(results.map(text)).toEqual(Array.from({ length: 10 }, (_, i) => `bridge ${i}`));
    expect(server.sessions()).toHaveLength(10);
    // Each session learns its own bridge's pid, however slowly `ss` answers.
    const pids = () => server.sessions().map((s) => s.client.pid ?? 0).sort();
    await expect.poll(pids, { timeout: 20_000 }).toEqual(clients.map((c) => c.transport.pid!).sort());
  });

  it('relays progress notifications sent while a call runs', async () => {
    const { home } = await core();
    const { client } = await clientFor(home.home);
    const messages: string[] = [];
    const result = await client.callTool({ name: 'wait', arguments: { ms: 300 } }, undefined, {
      onprogress: (p) => messages.push(String(p.message)),
    });
    expect(text(result)).toBe('waited 300 ms');
    expect(messages.length).toBeGreaterThanOrEqual(2);
    expect(messages[0]).toBe('still waiting');
  });

  it('carries the client cancellation to the AbortSignal of the call in the core', async () => {
    const { home, host } = await core();
    const { client } = await clientFor(home.home);
    const controller = new AbortController();
    const started = host.started('wait');
    const aborted = host.aborted('wait');
    const call = client.callTool({ name: 'wait', arguments: { ms: 30_000 } }, undefined, { signal: controller.signal });
    await started;
    controller.abort('the user pressed stop');
    await expect(call).rejects.toThrow();
    await aborted;
    expect(host.calls.find((c) => c.name === 'wait')!.aborted).toBe(true);
    expect(text(await client.callTool({ name: 'echo', arguments: { text: 'after cancel' } }))).toBe('after cancel');
  });

  it('survives a core restart mid-session: the call in flight fails clearly, the next call succeeds, and the client hears tools/list_changed', async () => {
    const home = tempHome();
    cleanups.push(() => home.cleanup());
    const first = fixtureToolHost();
    let server = await startSocketServer({ paths: home.paths, toolHost: first, log: quietLog });
    cleanups.push(() => server.close());
    const { client } = await clientFor(home.home);
    let listChanged = 0;
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      listChanged++;
    });
    expect(text(await client.callTool({ name: 'echo', arguments: { text: 'before' } }))).toBe('before');

    const started = first.started('wait');
    const inFlight = client.callTool({ name: 'wait', arguments: { ms: 30_000 } });
    const inFlightFails = expect(inFlight).rejects.toThrow(/stopped while this call was running, so its answer was lost; the call may have completed/);
    await started;
    await server.close();
    await inFlightFails;

    await new Promise((r) => setTimeout(r, 200));
    const second = fixtureToolHost();
    const sessions: SessionInfo[] = [];
    server = await startSocketServer({ paths: home.paths, toolHost: second, log: quietLog, onSession: (s) => sessions.push(s) });
    cleanups.push(() => server.close());

    expect(text(await client.callTool({ name: 'echo', arguments: { text: 'after restart' } }))).toBe('after restart');
    await waitUntil(() => listChanged === 1);
    // the replayed initialize carried the client's own clientInfo to the new core
    expect(sessions[0]!.client.name).toBe('countersign-test-client');
    expect(second.calls.map((c) => c.name)).toEqual(['echo']);
  });

  it('aborts the call in the core when the client closes the bridge stdin mid-call, and the core keeps serving', async () => {
    const { home, host } = await core();
    const { client, transport } = await clientFor(home.home);
    const started = host.started('wait');
    const aborted = host.aborted('wait');
    void client.callTool({ name: 'wait', arguments: { ms: 30_000 } }).catch(() => {});
    await started;
    const bridgePid = transport.pid!;
    await transport.close();
    await aborted;
    await waitUntil(() => !alive(bridgePid));
    const again = await clientFor(home.home);
    expect(text(await again.client.callTool({ name: 'echo', arguments: { text: 'next client' } }))).toBe('next client');
  });

  it('writes its diagnostics to the log file, never to stdout, and never the secret', async () => {
    const { home } = await core();
    const { client } = await clientFor(home.home);
    await client.listTools();
    const secret = readFileSync(home.paths.secretPath, 'utf8');
    await client.close();
    await waitUntil(() => {
      try {
        return readFileSync(join(home.paths.logDir, 'bridge.log'), 'utf8').includes('connected to the core');
      } catch {
        return false;
      }
    });
    expect(readFileSync(join(home.paths.logDir, 'bridge.log'), 'utf8')).not.toContain(secret);
  });
});

describe("the bridge's compiler tiers", () => {
  it("leave V8's optimising compiler to the core once the bridge has answered: two thousand calls compile nothing with TurboFan", async () => {
    const { home } = await core();
    // --trace-opt writes V8's tier-up decisions to stdout, beside the MCP lines (which the client below reads apart)
    const raw = spawnRawBridge(bridgePath, { COUNTERSIGN_HOME: home.home, COUNTERSIGN_APP_CMD: '[]' }, process.execPath, ['--trace-opt']);
    cleanups.push(() => raw.stop());
    raw.send(INIT);
    await raw.waitFor((m) => m.id === 0);
    for (let id = 1; id <= 2000; id++) {
      raw.send({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'echo', arguments: { text: 'ping' } } });
      await raw.waitFor((m) => m.id === id);
    }
    // the trace is on and the relay's code did move up a tier, to Maglev, and no further
    expect(raw.lines.filter((l) => l.includes('MAGLEV')).length).toBeGreaterThan(0);
    expect(raw.lines.filter((l) => l.includes('TURBOFAN'))).toEqual([]);
  }, 60_000);
});

describe('bridge start-up timing', () => {
  it('with COUNTERSIGN_BRIDGE_TIMING=1 writes each start-up step to stderr in order, and stdout still carries only MCP', async () => {
    const { home } = await core();
    const bridge = spawnRawBridge(bridgePath, { COUNTERSIGN_HOME: home.home, COUNTERSIGN_APP_CMD: '[]', COUNTERSIGN_BRIDGE_TIMING: '1' });
    cleanups.push(() => bridge.stop());
    let stderr = '';
    bridge.child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    bridge.send(INIT);
    await bridge.waitFor((m) => m.id === 0 && 'result' in m);
    await waitUntil(() => stderr.includes('first answer from the core'));
    const steps = [...stderr.matchAll(/^bridge timing (\d+\.\d) ms (.+)$/gm)].map((m) => ({ at: Number(m[1]), step: m[2] }));
    expect(steps.map((s) => s.step)).toEqual(['bundle loaded', 'paths resolved', 'connecting', 'connected', 'challenge', 'welcome', 'first answer from the core']);
    expect(steps.map((s) => s.at)).toEqual([...steps.map((s) => s.at)].sort((a, b) => a - b));
    expect(bridge.lines.every((l) => (JSON.parse(l) as { jsonrpc?: string }).jsonrpc === '2.0')).toBe(true);
  });

  it('writes no timing without COUNTERSIGN_BRIDGE_TIMING', async () => {
    const { home } = await core();
    const bridge = spawnRawBridge(bridgePath, { COUNTERSIGN_HOME: home.home, COUNTERSIGN_APP_CMD: '[]' });
    cleanups.push(() => bridge.stop());
    let stderr = '';
    bridge.child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    bridge.send(INIT);
    await bridge.waitFor((m) => m.id === 0 && 'result' in m);
    await waitUntil(() => stderr.includes('connected to the core'));
    expect(stderr).not.toContain('bridge timing');
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitUntil(check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 25));
  }
}
