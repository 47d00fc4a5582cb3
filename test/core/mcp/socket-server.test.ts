import { spawn } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { AppError } from '../../../common/errors.ts';
import { LineSplitter, clientProof, encodeLine } from '../../../common/handshake.ts';
import { connectOnce } from '../../../bridge/core-connection.ts';
import { hmacSha256, startSocketServer, type SocketServer } from '../../../main/core/mcp/socket-server.ts';
import { quietLog, tempHome, INIT } from '../../bridge/helpers.ts';
import { fixtureToolHost, type FixtureToolHost } from './fixtures/tool-host.ts';

type Message = Record<string, unknown>;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function core(options: { callDeadlineMs?: number } = {}): Promise<{ home: ReturnType<typeof tempHome>; host: FixtureToolHost; server: SocketServer }> {
  const home = tempHome();
  cleanups.push(() => home.cleanup());
  const host = fixtureToolHost();
  const server = await startSocketServer({ paths: home.paths, toolHost: host, log: quietLog, ...options });
  cleanups.push(() => server.close());
  return { home, host, server };
}

/** A raw, authenticated MCP connection to the core (the bridge's handshake, then bytes of our choosing). */
async function rawClient(paths: { socketPath: string; secretPath: string }) {
  const { socket, leftover } = await connectOnce(paths);
  cleanups.push(() => void socket.destroy());
  return lineClient(socket, leftover);
}

function lineClient(socket: Socket, leftover: Uint8Array[] = []) {
  const queue: Message[] = [];
  const waiters: Array<(m: Message) => void> = [];
  const splitter = new LineSplitter({
    maxLineBytes: 1 << 20,
    onLine: (line) => {
      const m = JSON.parse(line) as Message;
      const w = waiters.shift();
      if (w) w(m);
      else queue.push(m);
    },
  });
  for (const c of leftover) splitter.push(c);
  socket.on('data', (c: Buffer) => splitter.push(c));
  return {
    socket,
    write: (text: string) => socket.write(text),
    send: (m: unknown) => socket.write(encodeLine(m)),
    next: (ms = 5000): Promise<Message> =>
      queue.length > 0
        ? Promise.resolve(queue.shift()!)
        : new Promise((resolve, reject) => {
            const t = setTimeout(() => reject(new Error('no message from the core')), ms);
            waiters.push((m) => {
              clearTimeout(t);
              resolve(m);
            });
          }),
  };
}

async function initialized(paths: { socketPath: string; secretPath: string }) {
  const c = await rawClient(paths);
  c.send(INIT);
  expect(await c.next()).toMatchObject({ id: 0, result: { serverInfo: { name: 'countersign' } } });
  c.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  return c;
}

async function stillServes(paths: { socketPath: string; secretPath: string }): Promise<void> {
  const c = await initialized(paths);
  c.send({ jsonrpc: '2.0', id: 'alive', method: 'tools/call', params: { name: 'echo', arguments: { text: 'alive' } } });
  expect(await c.next()).toMatchObject({ id: 'alive', result: { content: [{ type: 'text', text: 'alive' }] } });
}

describe('core socket server', () => {
  it('keeps its socket and secret owner-only', async () => {
    const { home } = await core();
    expect(statSync(home.paths.runDir).mode & 0o777).toBe(0o700);
    expect(statSync(home.paths.secretPath).mode & 0o777).toBe(0o600);
    expect(readFileSync(home.paths.secretPath, 'utf8')).toMatch(/^[0-9a-f]{64}$/);
  });

  it('writes a different secret at each start and removes socket and secret on close', async () => {
    const home = tempHome();
    cleanups.push(() => home.cleanup());
    const a = await startSocketServer({ paths: home.paths, toolHost: fixtureToolHost(), log: quietLog });
    const first = readFileSync(home.paths.secretPath, 'utf8');
    await a.close();
    expect(existsSync(home.paths.socketPath)).toBe(false);
    expect(existsSync(home.paths.secretPath)).toBe(false);
    const b = await startSocketServer({ paths: home.paths, toolHost: fixtureToolHost(), log: quietLog });
    cleanups.push(() => b.close());
    expect(readFileSync(home.paths.secretPath, 'utf8')).not.toBe(first);
  });

  it('refuses a run directory that other users can open, and says why', async () => {
    const home = tempHome();
    cleanups.push(() => home.cleanup());
    mkdirSync(home.paths.runDir, { mode: 0o755 });
    chmodSync(home.paths.runDir, 0o755);
    const error = await startSocketServer({ paths: home.paths, toolHost: fixtureToolHost(), log: quietLog }).catch((e: unknown) => e);
    expect(AppError.is(error, 'SOCKET_UNSAFE')).toBe(true);
    expect((error as AppError).message).toMatch(/other users can open it \(mode 755\)/);
    expect(existsSync(home.paths.secretPath)).toBe(false);
  });

  it('refuses a run directory owned by another user, and says why', async () => {
    const home = tempHome();
    cleanups.push(() => home.cleanup());
    mkdirSync(home.paths.runDir, { mode: 0o700 });
    chownSync(home.paths.runDir, 65534, 65534);
    const error = await startSocketServer({ paths: home.paths, toolHost: fixtureToolHost(), log: quietLog }).catch((e: unknown) => e);
    expect(AppError.is(error, 'SOCKET_UNSAFE')).toBe(true);
    expect((error as AppError).message).toMatch(/belongs to another user \(uid 65534\)/);
  });

  it('refuses to start a second core while the first answers (the socket is the host-wide lock)', async () => {
    const { home } = await core();
    const secret = readFileSync(home.paths.secretPath, 'utf8');
    const error = await startSocketServer({ paths: home.paths, toolHost: fixtureToolHost(), log: quietLog }).catch((e: unknown) => e);
    expect(AppError.is(error, 'ALREADY_RUNNING')).toBe(true);
    // the first core's secret is untouched and it still serves
    expect(readFileSync(home.paths.secretPath, 'utf8')).toBe(secret);
    await stillServes(home.paths);
  });

  it('replaces a stale socket left by a core that died', async () => {
    const home = tempHome();
    cleanups.push(() => home.cleanup());
    mkdirSync(home.paths.runDir, { mode: 0o700 });
    const child = spawn(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(home.paths.socketPath)}, () => console.log('up'))`,
    ]);
    await new Promise((r) => child.stdout.once('data', r));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    expect(existsSync(home.paths.socketPath)).toBe(true);
    const server = await startSocketServer({ paths: home.paths, toolHost: fixtureToolHost(), log: quietLog });
    cleanups.push(() => server.close());
    await stillServes(home.paths);
  });

  it('refuses a client that does not know the secret, and the client learns no proof it could reuse', async () => {
    const { home } = await core();
    const socket = connect(home.paths.socketPath);
    cleanups.push(() => void socket.destroy());
    const c = lineClient(socket);
    const clientNonce = 'a'.repeat(64);
    c.send({ t: 'countersign/hello', v: 1, nonce: clientNonce });
    const challenge = await c.next();
    expect(challenge).toMatchObject({ t: 'countersign/challenge' });
    c.send({ t: 'countersign/proof', proof: clientProof(hmacSha256, 'b'.repeat(64), clientNonce, challenge.nonce as string) });
    expect(await c.next()).toMatchObject({ t: 'countersign/refused', code: 'HANDSHAKE_FAILED' });
    await new Promise((r) => socket.once('close', r));
    await stillServes(home.paths);
  });

  it('refuses MCP bytes sent without a handshake', async () => {
    const { home, host } = await core();
    const socket = connect(home.paths.socketPath);
    cleanups.push(() => void socket.destroy());
    const c = lineClient(socket);
    c.send({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'echo', arguments: { text: 'sneak' } } });
    expect(await c.next()).toMatchObject({ t: 'countersign/refused' });
    expect(host.calls).toHaveLength(0);
  });

  it('answers garbage lines with a JSON-RPC parse error and keeps the session', async () => {
    const { home } = await core();
    const c = await initialized(home.paths);
    c.write('this is not json\n{"unterminated": \n\u0000\u0001\u0002\n');
    for (let i = 0; i < 3; i++) expect(await c.next()).toMatchObject({ id: null, error: { code: -32700 } });
    c.send({ jsonrpc: '2.0', id: 2, method: 'tools/list' });
    expect(await c.next()).toMatchObject({ id: 2, result: { tools: expect.any(Array) } });
  });

  it('answers JSON that is not JSON-RPC with an invalid-request error', async () => {
    const { home } = await core();
    const c = await initialized(home.paths);
    c.send({ hello: 'world' });
    expect(await c.next()).toMatchObject({ id: null, error: { code: -32600 } });
    c.send([1, 2, 3]);
    expect(await c.next()).toMatchObject({ error: { code: -32600 } });
    c.send({ jsonrpc: '1.0', id: 7, method: 'tools/list' });
    expect(await c.next()).toMatchObject({ id: 7, error: { code: -32600 } });
    await stillServes(home.paths);
  });

  it('drops a 20 MB line with an error and keeps serving the same connection', async () => {
    const { home } = await core();
    const c = await initialized(home.paths);
    const big = JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'echo', arguments: { text: 'x'.repeat(20 * 1024 * 1024) } } });
    c.write(big + '\n');
    expect(await c.next(20_000)).toMatchObject({ id: null, error: { code: -32600, message: expect.stringMatching(/larger/) } });
    c.send({ jsonrpc: '2.0', id: 4, method: 'tools/call', params: { name: 'echo', arguments: { text: 'small' } } });
    expect(await c.next()).toMatchObject({ id: 4, result: { content: [{ text: 'small' }] } });
  });

  it('answers a call for an unknown tool with -32602', async () => {
    const { home } = await core();
    const c = await initialized(home.paths);
    c.send({ jsonrpc: '2.0', id: 5, method: 'tools/call', params: { name: 'drop_database', arguments: {} } });
    expect(await c.next()).toMatchObject({ id: 5, error: { code: -32602 } });
  });

  it('refuses a tool call sent before initialize, without reaching the ToolHost', async () => {
    const { home, host } = await core();
    const c = await rawClient(home.paths);
    c.send({ jsonrpc: '2.0', id: 6, method: 'tools/call', params: { name: 'echo', arguments: { text: 'early' } } });
    expect(await c.next()).toMatchObject({ id: 6, error: { code: -32600, message: expect.stringMatching(/initialize/) } });
    expect(host.calls).toHaveLength(0);
    c.send(INIT);
    expect(await c.next()).toMatchObject({ id: 0, result: {} });
  });

  it('tells every session when the tool list changes', async () => {
    const { home, host } = await core();
    const a = await initialized(home.paths);
    const b = await initialized(home.paths);
    host.changeTools();
    expect(await a.next()).toMatchObject({ method: 'notifications/tools/list_changed' });
    expect(await b.next()).toMatchObject({ method: 'notifications/tools/list_changed' });
  });
});

describe('a call that runs too long', () => {
  it('is stopped at the deadline and answered with a time-out that says so, well before the client gives up', async () => {
    const { home, host } = await core({ callDeadlineMs: 300 });
    const c = await rawClient(home.paths);
    c.send(INIT);
    await c.next();
    c.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    const started = Date.now();
    c.send({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'wait', arguments: { ms: 10_000 } } });
    const answer = (await c.next(5_000)) as { id: number; result: { isError: boolean; content: Array<{ text: string }>; _meta: Record<string, string> } };
    expect(answer.id).toBe(7);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(answer.result.isError).toBe(true);
    expect(answer.result._meta['countersign/code']).toBe('TIMEOUT');
    expect(answer.result.content[0]!.text).toMatch(/stopped this call after 0 s without an answer \(Claude stops waiting at 60 s\)/);
    expect(host.calls.at(-1)?.aborted).toBe(true);
  });
});
