import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket as NodeWebSocket } from 'ws';
import { startWebServer, type WebServer } from '../../main/headless/web-server.ts';
import { createFixtureApp, launchBrowser, sampleToolCall, type Browser, type FixtureApp } from '../helpers/ui.ts';

/** expect.poll with a time-out for a loaded CI machine (two cores shared with other suites). */
const poll: typeof expect.poll = (fn, options) => expect.poll(fn, { timeout: 15_000, ...options });


// Globals of the page the functions passed to page.evaluate run in (the root project has no DOM lib).
declare const location: { host: string; hash: string };
declare const window: Record<string, unknown>;
declare const document: { body: { textContent: string | null } | null };

/** A raw HTTP request with exactly the headers given (what a non-browser attacker can send). */
function raw(
  port: number,
  options: { method?: string; path: string; headers?: Record<string, string>; body?: string },
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method: options.method ?? 'GET', path: options.path, headers: options.headers, setHost: !options.headers?.Host },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

let staticDir: string;
let app: FixtureApp;
let server: WebServer;
let browser: Browser;
let attacker: Server;
let attackerPort: number;
const refusals: string[] = [];

beforeAll(async () => {
  staticDir = await mkdtemp(join(tmpdir(), 'countersign-web-static-'));
  await writeFile(
    join(staticDir, 'index.html'),
    '<!doctype html><html><head><title>t</title><script src="/app.js"></script><script>window.inlineRan = true;</script></head><body>ok</body></html>',
  );
  await writeFile(join(staticDir, 'app.js'), 'window.externalRan = true;');
  app = createFixtureApp();
  server = await startWebServer({ handlers: app.handlers, events: app.events, staticDir, log: (l) => refusals.push(l) });
  attacker = createServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(`<!doctype html><html><body>attacker<iframe id="f" src="${server.origin}/"></iframe></body></html>`);
  });
  await new Promise<void>((r) => attacker.listen(0, '127.0.0.1', r));
  attackerPort = (attacker.address() as AddressInfo).port;
  browser = await launchBrowser();
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await server?.close();
  await new Promise<void>((r) => (attacker ? attacker.close(() => r()) : r()));
  await rm(staticDir, { recursive: true, force: true });
});

/** Opens our page and exchanges its launch token, as the renderer does, returning the bearer. */
async function openAndExchange(page: Page, url: string): Promise<string> {
  await page.goto(url);
  return page.evaluate(async () => {
    const token = new URLSearchParams(location.hash.slice(1)).get('token');
    const res = await fetch('/api/session', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token }) });
    return ((await res.json()) as { bearer: string }).bearer;
  });
}

async function callFromPage(page: Page, channel: string, body: unknown, bearer: string | null): Promise<{ status: number; json: unknown }> {
  return page.evaluate(
    async ([channel, body, bearer]) => {
      const headers: Record<string, string> = { 'Content-Type': 'application/json' };
      if (bearer) headers.Authorization = `Bearer ${bearer}`;
      const res = await fetch(`/api/call/${channel}`, { method: 'POST', headers, body: JSON.stringify(body) });
      return { status: res.status, json: await res.json() };
    },
    [channel, body, bearer] as const,
  );
}

describe('the headless web host', () => {
  it('serves the page with a CSP that blocks inline script and forbids framing', async () => {
    const page = await browser.context.newPage();
    const violations: string[] = [];
    page.on('console', (m) => violations.push(m.text()));
    const response = await page.goto(server.url);
    const csp = response!.headers()['content-security-policy']!;
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain('unsafe-inline');
    expect(await page.evaluate(() => window.externalRan)).toBe(true);
    expect(await page.evaluate(() => window.inlineRan)).toBeUndefined();
    expect(violations.some((v) => v.includes('Content Security Policy'))).toBe(true);
    await page.close();
  });

  it('cannot be framed by another site', async () => {
    const page = await browser.context.newPage();
    await page.goto(`http://localhost:${attackerPort}/`);
    await page.waitForTimeout(300);
    const framed = page.frames().find((f) => f.url().startsWith(server.origin));
    const content = framed ? await framed.evaluate(() => document.body?.textContent ?? '').catch(() => '') : '';
    expect(content).not.toContain('ok');
    await page.close();
  });

  it('exchanges the launch token once and refuses it replayed', async () => {
    const url = server.issueLaunchUrl();
    const page = await browser.context.newPage();
    const bearer = await openAndExchange(page, url);
    expect(bearer).toMatch(/^[A-Za-z0-9_-]{40,}$/);
    const ok = await callFromPage(page, 'status.get', {}, bearer);
    expect(ok.status).toBe(200);
    expect((ok.json as { user: { sub: string } }).user.sub).toBe('alice');

    const replay = await page.evaluate(async (token) => {
      const res = await fetch('/api/session', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ token }) });
      return { status: res.status, json: await res.json() };
    }, new URL(url).hash.slice('#token='.length));
    expect(replay.status).toBe(401);
    expect(replay.json).toMatchObject({ code: 'WEB_UNAUTHORIZED' });
    await page.close();
  });

  it('refuses an expired launch token', async () => {
    const short = await startWebServer({ handlers: app.handlers, events: app.events, staticDir, launchTokenTtlMs: 1 });
    try {
      await new Promise((r) => setTimeout(r, 20));
      const token = new URL(short.url).hash.slice('#token='.length);
      const res = await raw(short.port, {
        method: 'POST',
        path: '/api/session',
        headers: { Origin: short.origin, 'Sec-Fetch-Site': 'same-origin', 'Content-Type': 'application/json' },
        body: JSON.stringify({ token }),
      });
      expect(res.status).toBe(401);
    } finally {
      await short.close();
    }
  });

  it('refuses a call without a bearer or with an unknown one', async () => {
    const page = await browser.context.newPage();
    await page.goto(server.origin + '/');
    const none = await callFromPage(page, 'status.get', {}, null);
    expect(none.status).toBe(401);
    expect(none.json).toMatchObject({ code: 'WEB_UNAUTHORIZED' });
    const forged = await callFromPage(page, 'status.get', {}, 'A'.repeat(43));
    expect(forged.status).toBe(401);
    await page.close();
  });

  it('refuses a request whose Host is not exactly its own (DNS rebinding)', async () => {
    for (const host of [`localhost:${server.port}`, 'attacker.example', `127.0.0.1:${server.port + 1}`]) {
      const res = await raw(server.port, { path: '/', headers: { Host: host } });
      expect(res.status, host).toBe(403);
      expect(JSON.parse(res.body)).toMatchObject({ code: 'WEB_FORBIDDEN' });
    }
    expect((await raw(server.port, { path: '/' })).status).toBe(200);
  });

  it('refuses an API call from a foreign Origin, even with a valid bearer', async () => {
    const page = await browser.context.newPage();
    const bearer = await openAndExchange(page, server.issueLaunchUrl());
    const before = app.decisions.length;
    app.pending.push({
      id: 'p-origin',
      tool: 'update_appointment',
      target: 'postgres://lab/clinic',
      tier: 3,
      reason: 'unbounded UPDATE',
      authorization_details: [],
      args: {},
      bytes: 'UPDATE appointments SET x = 1',
      digest: 'd',
      requestedAt: new Date().toISOString(),
      expiresAt: new Date(Date.now() + 60_000).toISOString(),
    });
    const res = await raw(server.port, {
      method: 'POST',
      path: '/api/call/approvals.decide',
      headers: {
        Origin: `http://127.0.0.1:${attackerPort}`,
        'Sec-Fetch-Site': 'same-origin',
        'Content-Type': 'application/json',
        Authorization: `Bearer ${bearer}`,
      },
      body: JSON.stringify({ id: 'p-origin', decision: 'approve', digest: 'd' }),
    });
    expect(res.status).toBe(403);
    expect(app.decisions.length).toBe(before);
    app.pending.splice(0);
    await page.close();
  });

  it('refuses a cross-site fetch from another page in the same browser', async () => {
    const page = await browser.context.newPage();
    await page.goto(`http://localhost:${attackerPort}/`);
    const before = app.decisions.length;
    refusals.splice(0);
    const sent = await page.evaluate(async (target) => {
      // A "simple" request needs no preflight: it reaches the server, which must refuse it.
      try {
        await fetch(`${target}/api/call/approvals.decide`, {
          method: 'POST',
          mode: 'no-cors',
          headers: { 'Content-Type': 'text/plain' },
          body: JSON.stringify({ id: 'x', decision: 'approve', digest: 'd' }),
        });
        return 'sent';
      } catch (e) {
        return String(e);
      }
    }, server.origin);
    // The 403 carries Cross-Origin-Resource-Policy: same-origin, so the browser hides even the opaque response.
    expect(sent).toContain('Failed to fetch');
    expect(app.decisions.length).toBe(before);
    expect(refusals).toContain('web: refused (WEB_FORBIDDEN): api origin mismatch');

    const spoofed = await raw(server.port, {
      method: 'POST',
      path: '/api/call/status.get',
      headers: { Origin: server.origin, 'Sec-Fetch-Site': 'cross-site', 'Content-Type': 'application/json' },
      body: '{}',
    });
    expect(spoofed.status).toBe(403);
    await page.close();
  });

  it('refuses a WebSocket opened from another origin', async () => {
    const page = await browser.context.newPage();
    await page.goto(`http://localhost:${attackerPort}/`);
    const outcome = await page.evaluate(
      (url) =>
        new Promise<string>((resolve) => {
          const ws = new WebSocket(url);
          ws.onopen = () => resolve('open');
          ws.onerror = () => resolve('error');
          setTimeout(() => resolve('timeout'), 3000);
        }),
      `ws://127.0.0.1:${server.port}/api/events`,
    );
    expect(outcome).toBe('error');
    await page.close();

    const status = await new Promise<number>((resolve) => {
      const ws = new NodeWebSocket(`ws://127.0.0.1:${server.port}/api/events`, { origin: 'http://attacker.example' });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => {});
    });
    expect(status).toBe(403);

    const spoofed = await new Promise<number>((resolve) => {
      const ws = new NodeWebSocket(`ws://127.0.0.1:${server.port}/api/events`, { origin: server.origin, headers: { 'Sec-Fetch-Site': 'cross-site' } });
      ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      ws.on('open', () => resolve(101));
      ws.on('error', () => {});
    });
    expect(spoofed).toBe(403);
  });

  it('sends events over a same-origin WebSocket only after the bearer arrives', async () => {
    const page = await browser.context.newPage();
    const bearer = await openAndExchange(page, server.issueLaunchUrl());
    const received = page.evaluate(
      ([bearer]) =>
        new Promise<{ unauthenticated: number; events: string[] }>((resolve) => {
          const anon = new WebSocket(`ws://${location.host}/api/events`);
          let unauthenticated = -1;
          anon.onclose = (e) => (unauthenticated = e.code);
          const ws = new WebSocket(`ws://${location.host}/api/events`);
          const events: string[] = [];
          ws.onopen = () => ws.send(JSON.stringify({ bearer }));
          ws.onmessage = (m) => {
            const msg = JSON.parse(String(m.data)) as { event: string; payload?: { seq?: number } };
            events.push(msg.event + (msg.payload?.seq ? `:${msg.payload.seq}` : ''));
            if (msg.event === 'audit.appended') {
              anon.close();
              setTimeout(() => resolve({ unauthenticated, events }), 50);
            }
          };
        }),
      [bearer] as const,
    );
    // The unauthenticated socket sends nothing and is closed after the auth time-out; the append
    // below must reach only the authenticated one.
    await page.waitForFunction(() => true);
    await new Promise((r) => setTimeout(r, 300));
    const record = app.append(sampleToolCall(1));
    const result = await received;
    expect(result.events).toEqual(['ready', `audit.appended:${record.seq}`]);
    expect(result.unauthenticated).not.toBe(1000);
    await page.close();
  });

  it('validates every request against the contract and answers errors as {code, message}', async () => {
    const page = await browser.context.newPage();
    const bearer = await openAndExchange(page, server.issueLaunchUrl());
    const bad = await callFromPage(page, 'audit.page', { limit: 100_000 }, bearer);
    expect(bad.status).toBe(400);
    expect(Object.keys(bad.json as object).sort()).toEqual(['code', 'message']);
    expect(bad.json).toMatchObject({ code: 'INPUT_INVALID' });
    const extra = await callFromPage(page, 'audit.get', { seq: 1, sql: 'DROP TABLE x' }, bearer);
    expect(extra.status).toBe(400);
    const unknown = await callFromPage(page, 'constructor', {}, bearer);
    expect(unknown.status).toBe(404);
    const missing = await callFromPage(page, 'audit.get', { seq: 999_999 }, bearer);
    expect(missing).toEqual({ status: 404, json: { code: 'NOT_FOUND', message: 'No record 999999.' } });
    await page.close();
  });

  it('strips a field the contract does not name from a handler response', async () => {
    const leaky = createFixtureApp();
    const original = leaky.handlers['session.signIn'];
    leaky.handlers['session.signIn'] = async (req) => ({ ...(await original(req)), access_token: 'planted-token-value' }) as never;
    const host = await startWebServer({ handlers: leaky.handlers, events: leaky.events, staticDir });
    try {
      const page = await browser.context.newPage();
      const bearer = await openAndExchange(page, host.url);
      const res = await callFromPage(page, 'session.signIn', {}, bearer);
      expect(res.status).toBe(200);
      expect(JSON.stringify(res.json)).not.toContain('planted-token-value');
      await page.close();
    } finally {
      await host.close();
    }
  });

  it('never copies a foreign error into a response or a log line, where it could carry a token', async () => {
    const planted = 'eyJplanted.secret-token-value.sig';
    const leaky = createFixtureApp();
    leaky.handlers['status.get'] = async () => {
      throw new Error(`connect failed: Authorization: Bearer ${planted}`);
    };
    const lines: string[] = [];
    const host = await startWebServer({ handlers: leaky.handlers, events: leaky.events, staticDir, log: (l) => lines.push(l) });
    try {
      const page = await browser.context.newPage();
      const bearer = await openAndExchange(page, host.url);
      const res = await callFromPage(page, 'status.get', {}, bearer);
      expect(res).toEqual({ status: 500, json: { code: 'INTERNAL', message: 'An internal error occurred.' } });
      expect(lines).toEqual(['web: status.get failed (INTERNAL)']);
      expect(JSON.stringify(lines)).not.toContain(planted);
      // Neither the launch token nor the bearer appears in a refusal line either.
      await callFromPage(page, 'status.get', {}, bearer.slice(0, -1) + (bearer.endsWith('A') ? 'B' : 'A'));
      expect(lines.join('\n')).not.toContain(bearer);
      expect(lines.join('\n')).not.toContain(new URL(host.url).hash.slice('#token='.length));
      await page.close();
    } finally {
      await host.close();
    }
  });

  it('streams an export only to the page holding the bearer, from its own origin', async () => {
    const host = await startWebServer({
      handlers: app.handlers,
      events: app.events,
      staticDir,
      exportAudit: ({ format }) => ({ filename: `audit.${format}`, mediaType: 'application/jsonl', lines: ['{"seq":1}\n', '{"seq":2}\n'] }),
    });
    try {
      const page = await browser.context.newPage();
      const bearer = await openAndExchange(page, host.url);
      const fetchExport = (b: string | null, body: unknown) =>
        page.evaluate(
          async ([b, body]) => {
            const headers: Record<string, string> = { 'Content-Type': 'application/json' };
            if (b) headers.Authorization = `Bearer ${b}`;
            const res = await fetch('/api/export', { method: 'POST', headers, body: JSON.stringify(body) });
            return { status: res.status, disposition: res.headers.get('content-disposition'), text: await res.text() };
          },
          [b, body] as const,
        );
      expect(await fetchExport(bearer, { format: 'jsonl', filter: {} })).toEqual({
        status: 200,
        disposition: 'attachment; filename="audit.jsonl"',
        text: '{"seq":1}\n{"seq":2}\n',
      });
      expect((await fetchExport(null, { format: 'jsonl' })).status).toBe(401);
      expect((await fetchExport(bearer, { format: 'xml' })).status).toBe(400);
      const foreign = await raw(host.port, {
        method: 'POST',
        path: '/api/export',
        headers: { Origin: 'http://attacker.example', 'Sec-Fetch-Site': 'cross-site', 'Content-Type': 'application/json', Authorization: `Bearer ${bearer}` },
        body: '{"format":"jsonl"}',
      });
      expect(foreign.status).toBe(403);
      await page.close();
    } finally {
      await host.close();
    }
  });

  it('does not serve files outside the renderer directory', async () => {
    for (const path of ['/../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/..%2f..%2fetc%2fpasswd', '/nope.js']) {
      const res = await raw(server.port, { path });
      expect(res.status, path).toBe(404);
    }
  });

  it('unsubscribes from the app and closes every socket when closed', async () => {
    const other = createFixtureApp();
    const host = await startWebServer({ handlers: other.handlers, events: other.events, staticDir });
    const page = await browser.context.newPage();
    const bearer = await openAndExchange(page, host.url);
    await page.evaluate(
      ([bearer]) =>
        new Promise<void>((resolve) => {
          const ws = new WebSocket(`ws://${location.host}/api/events`);
          ws.onopen = () => ws.send(JSON.stringify({ bearer }));
          ws.onmessage = () => resolve();
        }),
      [bearer] as const,
    );
    expect(other.listenerCount()).toBe(3);
    await host.close();
    await poll(() => other.listenerCount()).toBe(0);
    await expect(raw(host.port, { path: '/' })).rejects.toThrow();
    await page.close();
  });
});
