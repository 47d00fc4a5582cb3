import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startSocketServer } from '../../main/core/mcp/socket-server.ts';
import { fixtureToolHost } from '../core/mcp/fixtures/tool-host.ts';
import { INIT, ROOT, buildBridgeInto, quietLog, spawnRawBridge, tempHome, type RawBridge } from './helpers.ts';

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

function bridge(env: Record<string, string>): RawBridge {
  const b = spawnRawBridge(bridgePath, env);
  cleanups.push(() => b.stop());
  return b;
}

function home() {
  const h = tempHome();
  cleanups.push(() => h.cleanup());
  return h;
}

/** stdout of the bridge carries only JSON-RPC messages. */
function expectOnlyMcp(b: RawBridge): void {
  expect(b.lines.length).toBeGreaterThan(0);
  for (const line of b.lines) expect(JSON.parse(line)).toMatchObject({ jsonrpc: '2.0' });
}

const byId = (id: unknown) => (m: Record<string, unknown>) => m.id === id;

describe('bridge when the app is not running', () => {
  it('starts the app and relays the first call to it', async () => {
    const h = home();
    const appCmd = JSON.stringify([process.execPath, join(ROOT, 'test/bridge/fixtures/app.ts')]);
    const b = bridge({ COUNTERSIGN_HOME: h.home, COUNTERSIGN_APP_CMD: appCmd, COUNTERSIGN_APP_WAIT_MS: '15000' });
    cleanups.push(() => {
      try {
        process.kill(Number(readFileSync(join(h.home, 'fixture-app.pid'), 'utf8')), 'SIGTERM');
      } catch {
        // the app never started
      }
    });
    b.send(INIT);
    const init = await b.waitFor(byId(0), 15_000);
    expect(init).toMatchObject({ result: { serverInfo: { name: 'countersign' } } });
    expect((init.result as { instructions?: string }).instructions).not.toMatch(/not running/);
    b.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    b.send({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'started for me' } } });
    expect(await b.waitFor(byId(1))).toMatchObject({ result: { content: [{ text: 'started for me' }] } });
    expectOnlyMcp(b);
  });

  it('answers "Open Countersign and sign in" within the bounded wait when the app cannot be started, then picks the app up once it runs', async () => {
    const h = home();
    const b = bridge({ COUNTERSIGN_HOME: h.home, COUNTERSIGN_APP_CMD: JSON.stringify(['/nonexistent/countersign']), COUNTERSIGN_APP_WAIT_MS: '800' });
    const t0 = Date.now();
    b.send(INIT);
    const init = await b.waitFor(byId(0));
    expect(Date.now() - t0).toBeLessThan(3000);
    expect((init.result as { instructions: string }).instructions).toMatch(/Open Countersign and sign in/);
    b.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    b.send({ jsonrpc: '2.0', id: 1, method: 'tools/list' });
    expect(await b.waitFor(byId(1))).toMatchObject({ result: { tools: [] } });
    b.send({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'echo', arguments: { text: 'x' } } });
    const call = await b.waitFor(byId(2));
    expect(call).toMatchObject({ result: { isError: true, content: [{ text: expect.stringMatching(/Open Countersign and sign in/) }] } });

    const server = await startSocketServer({ paths: h.paths, toolHost: fixtureToolHost(), log: quietLog });
    cleanups.push(() => server.close());
    await b.waitFor((m) => m.method === 'notifications/tools/list_changed', 8000);
    b.send({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'echo', arguments: { text: 'now it runs' } } });
    expect(await b.waitFor(byId(3))).toMatchObject({ result: { content: [{ text: 'now it runs' }] } });
    expect(server.sessions()[0]!.client.name).toBe('raw-test-client');
    expectOnlyMcp(b);
  });

  it('tells a process squatting on the socket nothing but a random nonce', async () => {
    const h = home();
    mkdirSync(h.paths.runDir, { recursive: true, mode: 0o700 });
    const received: string[] = [];
    const squatter = createServer((s: Socket) => {
      s.on('error', () => {});
      s.on('data', (c) => {
        received.push(c.toString());
        s.write(JSON.stringify({ t: 'countersign/challenge', v: 1, nonce: 'c'.repeat(64), proof: 'd'.repeat(64) }) + '\n');
      });
    });
    await new Promise<void>((r) => squatter.listen(h.paths.socketPath, r));
    cleanups.push(() => new Promise<void>((r) => squatter.close(() => r())));
    // a secret the squatter cannot know (a leftover from an earlier start)
    writeFileSync(h.paths.secretPath, 'e'.repeat(64), { mode: 0o600 });
    const b = bridge({ COUNTERSIGN_HOME: h.home, COUNTERSIGN_APP_CMD: JSON.stringify(['/nonexistent/countersign']), COUNTERSIGN_APP_WAIT_MS: '500' });
    b.send(INIT);
    b.send({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'private data' } } });
    expect(await b.waitFor(byId(1))).toMatchObject({ result: { isError: true } });
    const all = received.join('');
    expect(all).not.toContain('private data');
    expect(all).not.toContain('initialize');
    expect(all).not.toContain('countersign/proof');
    expect(all.length).toBeGreaterThan(0);
    for (const line of all.trim().split('\n')) expect(JSON.parse(line)).toEqual({ t: 'countersign/hello', v: 1, nonce: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });
});

describe('bridge facing bad input from its client', () => {
  it('relays parse errors for garbage, drops a 20 MB line with an error, and keeps serving', async () => {
    const h = home();
    const server = await startSocketServer({ paths: h.paths, toolHost: fixtureToolHost(), log: quietLog });
    cleanups.push(() => server.close());
    const b = bridge({ COUNTERSIGN_HOME: h.home });
    b.send(INIT);
    await b.waitFor(byId(0));
    b.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    b.sendRaw('garbage\n{"jsonrpc":\n');
    await b.waitFor((m) => m.id === null && (m.error as { code: number }).code === -32700);
    await b.waitFor((m) => m.id === null && (m.error as { code: number }).code === -32700);
    b.sendRaw(JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'echo', arguments: { text: 'y'.repeat(20 * 1024 * 1024) } } }) + '\n');
    await b.waitFor((m) => m.id === null && (m.error as { code: number }).code === -32600, 20_000);
    b.send({ jsonrpc: '2.0', id: 10, method: 'tools/call', params: { name: 'echo', arguments: { text: 'fine' } } });
    expect(await b.waitFor(byId(10))).toMatchObject({ result: { content: [{ text: 'fine' }] } });
    expectOnlyMcp(b);
  });
});
