import { createServer, type Server } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startFaultProxy, type FaultProxy } from '../../lab/fault-proxy.ts';

let server: Server;
let proxy: FaultProxy;
let requests = 0;
const BODY = 'x'.repeat(2_000);

beforeAll(async () => {
  server = createServer((_req, res) => {
    requests += 1;
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(BODY.length) }).end(BODY);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  proxy = await startFaultProxy({ host: '127.0.0.1', port: (server.address() as AddressInfo).port });
});
afterAll(async () => {
  await proxy.stop();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

/** One raw HTTP request through the proxy: the bytes that came back, how the connection ended, and when. */
function raw(waitMs = 1_500): Promise<{ bytes: number; ended: 'fin' | 'reset' | 'still open'; ms: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = connect(proxy.port, '127.0.0.1');
    let bytes = 0;
    const done = (ended: 'fin' | 'reset' | 'still open') => {
      clearTimeout(timer);
      s.destroy();
      resolve({ bytes, ended, ms: performance.now() - t0 });
    };
    const timer = setTimeout(() => done('still open'), waitMs);
    s.on('data', (d) => (bytes += d.length));
    s.on('end', () => done('fin'));
    s.on('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNRESET' ? 'reset' : 'fin'));
    s.write('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
  });
}

describe('the fault proxy', () => {
  it('passes bytes both ways when no fault is set', async () => {
    proxy.setFault(null);
    const r = await raw();
    expect(r.ended).toBe('fin');
    expect(r.bytes).toBeGreaterThan(BODY.length);
  });

  it('delays both ways by the latency set', async () => {
    proxy.setFault({ kind: 'latency', ms: 300 });
    const r = await raw();
    expect(r.bytes).toBeGreaterThan(BODY.length);
    expect(r.ms).toBeGreaterThanOrEqual(550);
  });

  it('hangs: the request never reaches the part, nothing comes back, the connection stays open', async () => {
    proxy.setFault({ kind: 'hang' });
    const before = requests;
    expect(await raw(600)).toMatchObject({ bytes: 0, ended: 'still open' });
    expect(requests).toBe(before);
  });

  it('half-open: the part gets the request, its answer never comes back, and no FIN either', async () => {
    proxy.setFault({ kind: 'half-open' });
    const before = requests;
    expect(await raw(600)).toMatchObject({ bytes: 0, ended: 'still open' });
    expect(requests).toBe(before + 1);
  });

  it('resets the connection when the client speaks', async () => {
    proxy.setFault({ kind: 'reset' });
    expect(await raw()).toMatchObject({ bytes: 0, ended: 'reset' });
  });

  it('resets in the middle of the response after the bytes set', async () => {
    proxy.setFault({ kind: 'reset-mid-response', afterBytes: 50 });
    const r = await raw();
    expect(r.ended).toBe('reset');
    expect(r.bytes).toBeLessThanOrEqual(50);
  });

  it('truncates the response: exactly the bytes set, then a FIN', async () => {
    proxy.setFault({ kind: 'truncate', afterBytes: 100 });
    expect(await raw()).toMatchObject({ bytes: 100, ended: 'fin' });
  });

  it("slow-close: the whole answer comes back at once, the part's close only the time set later", async () => {
    proxy.setFault({ kind: 'slow-close', ms: 400 });
    const r = await raw();
    expect(r).toMatchObject({ bytes: expect.any(Number), ended: 'fin' });
    expect(r.bytes).toBeGreaterThan(BODY.length);
    expect(r.ms).toBeGreaterThanOrEqual(400);
    proxy.setFault(null);
    expect((await raw()).ms).toBeLessThan(400);
  });

  it("slow-close: the client's FIN reaches the part, which can still answer after it", async () => {
    // A part that answers once the client has said all it will say (its FIN), then closes.
    const part = createNetServer({ allowHalfOpen: true }, (s) => {
      let heard = '';
      s.on('data', (d) => (heard += d));
      s.on('end', () => s.end(`heard ${heard.length} bytes, then the FIN`));
    });
    await new Promise<void>((r) => part.listen(0, '127.0.0.1', r));
    const halfProxy = await startFaultProxy({ host: '127.0.0.1', port: (part.address() as AddressInfo).port });
    try {
      halfProxy.setFault({ kind: 'slow-close', ms: 100 });
      const answer = await new Promise<string>((resolve, reject) => {
        const s = connect({ port: halfProxy.port, host: '127.0.0.1', allowHalfOpen: true });
        let got = '';
        s.on('data', (d) => (got += d));
        s.on('end', () => resolve(got));
        s.on('error', reject);
        s.end('goodbye');
      });
      expect(answer).toBe('heard 7 bytes, then the FIN');
    } finally {
      await halfProxy.stop();
      await new Promise((r) => part.close(r));
    }
  });
});
