/**
 * Remote MCP upstreams through the real broker, against the real lab (startLab: IdP, Vault stand-in,
 * PostgreSQL, both upstream MCP servers): the connectors come from createUpstreamConnectors, their
 * listing credentials from Credentials.withCredential, every call from Broker.callTool. What the upstreams
 * received is read from Node's own `http.server.request.start` diagnostics channel, i.e. the headers
 * as the lab's HTTP servers got them.
 */
import { randomUUID, webcrypto } from 'node:crypto';
import { createHash } from 'node:crypto';
import diagnostics from 'node:diagnostics_channel';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calculateJwkThumbprint, exportJWK, SignJWT } from 'jose';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';
import { AppError } from '../../../common/errors.ts';
import type { Broker, Credentials } from '../../../main/core/broker/index.ts';
import { createUpstreamConnectors } from '../../../main/core/connectors/mcp-upstream/index.ts';
import type { McpUpstreamConnector, UpstreamConfigInput } from '../../../main/core/connectors/mcp-upstream/index.ts';
import { createPostgresConnector } from '../../../main/core/connectors/postgres/connector.ts';
import type { CallPlan, Connector, ExecuteContext } from '../../../main/core/connectors/types.ts';
import type { Obo, TokenExchanger } from '../../../main/core/idp/token-exchange.ts';
import type { StepUpChallenge, TokenSource, UserIdentity } from '../../../main/core/ports.ts';
import { decodeJwt, signIn } from '../../lab/idp-fixtures.ts';
import type { DpopKey } from '../../lab/idp-fixtures.ts';
import { findSecret, type MemoryAudit } from '../broker/fixtures.ts';
import { call, DEMO_POLICY, settled, startBrokerLab, type BrokerLab } from '../broker/lab.ts';

const ACR_MFA = 'urn:countersign:acr:mfa';
const LAB_OTP = '246810';
const text = (r: { content?: unknown[] }): string => (r.content ?? []).map((c) => (c as { text?: string }).text ?? '').join('\n');

let lab: BrokerLab;

/** Requests as the lab's HTTP servers received them (all in this process), keyed by local port. */
interface Received {
  port: number;
  method: string;
  authorization?: string;
  dpop?: string;
  apiKey?: string;
}
const received: Received[] = [];
const onRequest = (message: unknown): void => {
  const request = (message as { request: IncomingMessage }).request;
  const h = request.headers;
  received.push({
    port: request.socket.localPort ?? 0,
    method: request.method ?? '',
    ...(typeof h.authorization === 'string' ? { authorization: h.authorization } : {}),
    ...(typeof h.dpop === 'string' ? { dpop: h.dpop } : {}),
    ...(typeof h['x-api-key'] === 'string' ? { apiKey: h['x-api-key'] } : {}),
  });
};
const portOf = (url: string): number => Number(new URL(url).port);

/**
 * The signed-in user as the auth module holds them, from a real sign-in at the lab IdP. `stepUp` is a
 * real re-login at the lab's login page with the demanded acr_values and the lab's one-time code (the
 * browser part the user would play).
 */
class LabUser implements TokenSource {
  accessToken = '';
  readonly stepUps: StepUpChallenge[] = [];
  #user: UserIdentity = { sub: '' };
  readonly #username: string;
  readonly #password: string;
  readonly #key: webcrypto.CryptoKeyPair | undefined;

  constructor(username: string, password: string, key?: webcrypto.CryptoKeyPair) {
    this.#username = username;
    this.#password = password;
    this.#key = key;
  }

  async signIn(o: { acrValues?: string } = {}): Promise<void> {
    const tokens = await signIn(lab.idp, {
      username: this.#username,
      password: this.#password,
      ...(o.acrValues ? { acrValues: o.acrValues, otp: LAB_OTP } : {}),
      ...(this.#key ? { dpop: await fixtureKey(this.#key) } : {}),
    });
    this.accessToken = tokens.access_token;
    this.#user = { sub: String(decodeJwt(this.accessToken).sub) };
  }

  async getAccessToken(signal?: AbortSignal): Promise<string> {
    signal?.throwIfAborted();
    return this.accessToken;
  }

  async stepUp(challenge: StepUpChallenge): Promise<void> {
    this.stepUps.push(challenge);
    await this.signIn(challenge.acrValues ? { acrValues: challenge.acrValues } : {});
  }

  user(): UserIdentity {
    return this.#user;
  }

  dpopKeyPair(): webcrypto.CryptoKeyPair | undefined {
    return this.#key;
  }
}

/** The sign-in fixture's DPoP interface over the same WebCrypto key the core uses. */
async function fixtureKey(key: webcrypto.CryptoKeyPair): Promise<DpopKey> {
  const publicJwk = await exportJWK(key.publicKey);
  return {
    publicJwk,
    thumbprint: await calculateJwkThumbprint(publicJwk),
    proof: (htm, htu, accessToken) =>
      new SignJWT({ htm, htu, jti: randomUUID(), ...(accessToken ? { ath: createHash('sha256').update(accessToken).digest('base64url') } : {}) })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: publicJwk })
        .setIssuedAt()
        .sign(key.privateKey),
  };
}

/** The core's real token exchanger, with every OBO it returned kept aside so a test can replay one. */
function recording(inner: TokenExchanger, issued: Obo[]): TokenExchanger {
  return {
    async exchange(request) {
      const obo = await inner.exchange(request);
      issued.push(obo);
      return obo;
    },
  };
}

const approveAll = { approve: async () => ({ outcome: 'approved' as const }) };

interface Setup {
  broker: Broker;
  credentials: Credentials;
  audit: MemoryAudit;
  connectors: Connector[];
  issued: Obo[];
}

function setup(user: TokenSource, configs: UpstreamConfigInput[], withPostgres = false): Setup {
  const issued: Obo[] = [];
  const idp = recording(lab.exchanger, issued);
  const { credentials, audit } = lab.credentials({ tokens: user, idp });
  const connectors = createUpstreamConnectors(configs, { credentials, tokens: user });
  const all = withPostgres ? [createPostgresConnector({ policy: DEMO_POLICY, connection: lab.connection }), ...connectors] : connectors;
  const made = lab.broker({ connectors: all, tokens: user, approver: approveAll, idp, audit, credentials });
  closers.push(() => made.broker.close());
  return { broker: made.broker, credentials, audit: made.audit, connectors, issued };
}

const closers: Array<() => Promise<unknown>> = [];
let alice: LabUser;
let main: Setup;

beforeAll(async () => {
  lab = await startBrokerLab();
  diagnostics.subscribe('http.server.request.start', onRequest);
  alice = new LabUser('alice', 'alice-lab-pw');
  await alice.signIn();
  main = setup(
    alice,
    [
      { name: 'lab', url: lab.upstream.url, issuer: lab.idp.issuer, allowInsecureHttpForLoopbackOnly: true, tools: [{ pattern: 'approve_*', tier: 3 }] },
      { name: 'quotes', url: lab.upstream.apiKeyUrl, auth: 'api-key', apiKey: { path: 'upstreams/apikey-demo' }, allowInsecureHttpForLoopbackOnly: true },
    ],
    true,
  );
});

afterAll(async () => {
  diagnostics.unsubscribe('http.server.request.start', onRequest);
  for (const close of closers.reverse()) await close().catch(() => {});
  await lab?.stop();
});

describe('an identity-protected upstream through the broker', () => {
  it('lists its tools as <name>.<tool> beside the database tools, the listing itself exchanged, used and recorded once', async () => {
    const names = (await main.broker.listTools()).map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(['query', 'lab__get_weather', 'lab__create_ticket', 'lab__approve_payment', 'quotes__get_quote']));
    const listings = main.audit.records.filter((r) => r.kind === 'system');
    expect(listings.map((r) => [r.tool, r.outcome])).toEqual(
      expect.arrayContaining([
        ['lab.*', 'success'],
        ['quotes.*', 'success'],
      ]),
    );
    const labListing = listings.find((r) => r.tool === 'lab.*')!;
    expect(labListing.hops!.map((h) => h.name)).toEqual(['approval', 'exchange', 'execute']);
    expect(labListing.keys?.obo_jti).toBe(main.issued.find((o) => o.authorizationDetails[0]?.actions?.includes('list'))?.jti);
    // The listing's token named the listing, not a call: the upstream saw it but recorded no tool call with it.
    expect(lab.upstream.seen().map((s) => s.jti)).toContain(labListing.keys?.obo_jti);
    expect(lab.upstream.calls().map((c) => c.jti)).not.toContain(labListing.keys?.obo_jti);
  });

  it('calls a tool end to end: the upstream saw its own audience, the user, Countersign as actor, and a fresh jti per call', async () => {
    const first = await main.broker.callTool(call('lab__get_weather', { city: 'Lyon' }));
    const second = await main.broker.callTool(call('lab__get_weather', { city: 'Lille' }));
    expect(first.isError, text(first)).toBeFalsy();
    expect(text(first)).toContain(`Weather in Lyon for ${alice.user().sub}`);
    expect(text(second)).toContain('Weather in Lille');

    const records = main.audit.records.filter((r) => r.kind === 'tool_call' && r.tool === 'lab__get_weather');
    expect(records).toHaveLength(2);
    const jtis = records.map((r) => r.keys?.obo_jti);
    expect(new Set(jtis).size).toBe(2);
    expect(lab.upstream.calls().slice(-2).map((c) => c.jti)).toEqual(jtis);
    for (const jti of jtis) {
      expect(lab.upstream.seen().find((s) => s.jti === jti)).toMatchObject({ aud: lab.upstream.url, sub: alice.user().sub, act: { sub: 'countersign-desktop' }, dpop: false });
    }
    expect(records[0]!.keys?.upstream_request_id).toMatch(/^[0-9a-f-]{36}$/);
    expect(records[0]!.hops!.map((h) => h.name)).toEqual(['validate', 'classify', 'approval', 'exchange', 'execute']);
  });

  it("never sends the user's own access token to the upstream, and the upstream refuses it when it is sent", async () => {
    const toUpstream = received.filter((r) => r.port === portOf(lab.upstream.url) && r.authorization);
    expect(toUpstream.length).toBeGreaterThan(4);
    expect(findSecret(JSON.stringify(toUpstream), { accessToken: alice.accessToken })).toEqual([]);
    for (const r of toUpstream) {
      const [scheme, token] = r.authorization!.split(' ');
      expect(scheme).toBe('Bearer');
      expect(decodeJwt(token!)).toMatchObject({ aud: lab.upstream.url, act: { sub: 'countersign-desktop' } });
    }

    const passthrough = await fetch(lab.upstream.url, {
      method: 'POST',
      headers: { authorization: `Bearer ${alice.accessToken}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }),
    });
    expect(passthrough.status).toBe(401);
    expect(passthrough.headers.get('www-authenticate')).toContain('invalid_token');
    await passthrough.body?.cancel();
  });

  it("tells the broker's listeners when the upstream's tool list changes, and lists the new tool with a fresh listing credential", async () => {
    const listingsBefore = main.audit.records.filter((r) => r.kind === 'system' && r.tool === 'lab.*').length;
    let unsubscribe: () => void = () => {};
    const changed = new Promise<void>((resolve) => (unsubscribe = main.broker.onToolsChanged(resolve)));
    lab.upstream.addTool('echo_fresh');
    await Promise.race([changed, new Promise((_, reject) => setTimeout(() => reject(new Error('no tools/list_changed reached the broker')), 5_000))]);
    unsubscribe();
    expect((await main.broker.listTools()).map((t) => t.name)).toContain('lab__echo_fresh');
    expect(main.audit.records.filter((r) => r.kind === 'system' && r.tool === 'lab.*').length).toBe(listingsBefore + 1);
  });

  it("passes the upstream's progress to the client and cancels the upstream call when the client cancels, with one record", async () => {
    const controller = new AbortController();
    const progress: string[] = [];
    const cancelled = lab.upstream.cancelled().length;
    const t0 = performance.now();
    const result = await main.broker.callTool(
      call('lab__generate_report', { steps: 20, step_ms: 100 }, { signal: controller.signal, progress: (m) => (progress.push(m), controller.abort()) }),
    );
    expect(performance.now() - t0).toBeLessThan(1_500);
    expect(result.isError).toBe(true);
    expect(text(result)).toMatch(/\[CANCELLED\]$/);
    expect(progress[0]).toBe('step 1 of 20');
    const records = main.audit.records.filter((r) => r.tool === 'lab__generate_report');
    expect(records).toMatchObject([{ kind: 'tool_call', outcome: 'cancelled', error: { code: 'CANCELLED' } }]);
    // The upstream's own handler hears it (after the answer: the broker answers a cancelled call at
    // once, and the connector's session ends behind it): the report stops there.
    await expect.poll(() => lab.upstream.cancelled().slice(cancelled), { timeout: 5_000 }).toMatchObject([{ tool: 'generate_report' }]);
  });

  it('re-logs in with the acr_values the upstream demands (RFC 9470) and succeeds on one retry with a fresh exchange; the upstream refuses the used jti again', async () => {
    const user = new LabUser('alice', 'alice-lab-pw');
    await user.signIn();
    const s = setup(user, [{ name: 'pay', url: lab.upstream.url, issuer: lab.idp.issuer, allowInsecureHttpForLoopbackOnly: true }]);
    const args = { payment_id: 'P-7', amount: 42 };
    const result = await s.broker.callTool(call('pay__approve_payment', args));
    expect(result.isError, text(result)).toBeFalsy();
    expect(text(result)).toContain('Payment P-7 of 42 approved');
    expect(user.stepUps).toEqual([{ acrValues: ACR_MFA }]);
    expect(decodeJwt(user.accessToken).acr).toBe(ACR_MFA);

    const record = s.audit.records.find((r) => r.kind === 'tool_call')!;
    expect(record.outcome).toBe('success');
    const hops = record.hops!.map((h) => `${h.name}:${h.outcome}`);
    expect(hops).toEqual(['validate:ok', 'classify:ok', 'approval:ok', 'exchange:ok', 'execute:error', 'step_up:ok', 'exchange:ok', 'execute:ok']);
    const callObos = s.issued.filter((o) => o.authorizationDetails[0]?.identifier === 'approve_payment');
    expect(callObos.map((o) => o.acr)).toEqual(['urn:countersign:acr:pwd', ACR_MFA]);
    expect(record.keys?.obo_jti).toBe(callObos[1]!.jti);
    expect(lab.upstream.calls().at(-1)).toMatchObject({ jti: callObos[1]!.jti, tool: 'approve_payment' });
    expect(lab.upstream.seen().find((x) => x.jti === callObos[1]!.jti)?.acr).toBe(ACR_MFA);

    const connector = s.connectors[0] as McpUpstreamConnector;
    const plan = await connector.plan('pay__approve_payment', args);
    const replay = await connector.execute(context(plan, args, callObos[1]!.token)).catch((e: unknown) => e);
    expect(AppError.is(replay, 'UPSTREAM_DENIED')).toBe(true);
  });
});

function context(plan: CallPlan, args: Record<string, unknown>, obo: string): ExecuteContext {
  return { plan, args, obo, oboJti: String(decodeJwt(obo).jti), credential: { kind: 'obo' }, signal: AbortSignal.timeout(10_000), progress: () => {}, note: () => {} };
}

describe('a DPoP-bound upstream call (RFC 9449)', () => {
  it('is refused by the upstream without a proof and accepted with the proof Countersign signs with the bound key', async () => {
    const key = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const user = new LabUser('alice', 'alice-lab-pw', key);
    await user.signIn();
    const s = setup(user, [{ name: 'bound', url: lab.upstream.url, issuer: lab.idp.issuer, allowInsecureHttpForLoopbackOnly: true }]);

    const result = await s.broker.callTool(call('bound__get_weather', { city: 'Tromsø' }));
    expect(result.isError, text(result)).toBeFalsy();
    const jti = s.audit.records.find((r) => r.kind === 'tool_call')!.keys!.obo_jti!;
    expect(lab.upstream.seen().find((x) => x.jti === jti)?.dpop).toBe(true);
    const obo = s.issued.find((o) => o.jti === jti)!;
    expect(obo.tokenType).toBe('DPoP');
    const withThisToken = received.filter((r) => r.authorization === `DPoP ${obo.token}`);
    expect(withThisToken.length).toBeGreaterThan(0);
    expect(withThisToken.every((r) => typeof r.dpop === 'string')).toBe(true);

    // A fresh bound OBO for one call, not yet used: without a proof (as DPoP or downgraded to Bearer) it is refused…
    const connector = s.connectors[0] as McpUpstreamConnector;
    const args = { city: 'Bodø' };
    const plan = await connector.plan('bound__get_weather', args);
    const fresh = await lab.exchanger.exchange({ subjectToken: user.accessToken, authorizationDetails: plan.authorizationDetails, resource: plan.resource!, dpopKeyPair: key });
    for (const authorization of [`DPoP ${fresh.token}`, `Bearer ${fresh.token}`]) {
      const res = await fetch(lab.upstream.url, {
        method: 'POST',
        headers: { authorization, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
        body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }),
      });
      expect(res.status, authorization.split(' ')[0]).toBe(401);
      await res.body?.cancel();
    }
    // …and the same token with Countersign's proof goes through.
    const ok = await connector.execute(context(plan, args, fresh.token));
    expect(text(ok)).toContain('Weather in Bodø');
    expect(lab.upstream.calls().at(-1)?.jti).toBe(fresh.jti);
  });
});

describe('an API-key upstream', () => {
  it('reads the key from Vault for each call, and the key appears in no log, audit record, answer or Vault audit line', async () => {
    const kvReads = async () =>
      (await readFile(lab.vaultAuditLogPath, 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { type: string; request?: { path?: string } })
        .filter((e) => e.type === 'response' && e.request?.path === 'secret/data/upstreams/apikey-demo').length;
    const before = await kvReads();
    const results = [];
    for (const symbol of ['ACME', 'INIT']) results.push(await main.broker.callTool(call('quotes__get_quote', { symbol })));
    expect(results.map(text)).toEqual(['ACME: 123.45', 'INIT: 123.45']);
    // The audit device may write its response line just after the answer left: wait for it, briefly.
    for (let i = 0; i < 40 && (await kvReads()) - before < 2; i += 1) await new Promise((r) => setTimeout(r, 50));
    expect((await kvReads()) - before).toBe(2);

    const records = main.audit.records.filter((r) => r.tool === 'quotes__get_quote');
    expect(records).toHaveLength(2);
    for (const r of records) {
      expect(r.outcome).toBe('success');
      expect(r.authorization_details).toEqual([{ type: 'api_key', locations: [lab.upstream.apiKeyUrl], actions: ['read'], identifier: 'quotes' }]);
      expect(r.hops!.map((h) => h.name)).toEqual(['validate', 'classify', 'approval', 'exchange', 'vault_login', 'vault_creds', 'execute', 'revoke']);
      expect(r.keys?.vault_accessor).toBeTruthy();
    }
    const presented = received.filter((r) => r.port === portOf(lab.upstream.apiKeyUrl));
    expect(presented.length).toBeGreaterThan(0);
    expect(presented.every((r) => r.apiKey === lab.upstream.apiKey && r.authorization === undefined)).toBe(true);

    const everything = JSON.stringify({
      records: main.audit.records,
      core: lab.logs.core,
      lab: lab.logs.lab,
      vaultAudit: await readFile(lab.vaultAuditLogPath, 'utf8'),
      results,
    });
    expect(findSecret(everything, { apiKey: lab.upstream.apiKey, accessToken: alice.accessToken })).toEqual([]);
    expect((await settled(lab)).leases).toBe(0);
  });
});

describe('the broker as the connectors’ credential source', () => {
  it('refuses a plan above tier 1 outside a tool call, before any token is read, and records the refusal', async () => {
    let reads = 0;
    const counting: TokenSource = { ...alice, getAccessToken: async () => (reads++, alice.accessToken), user: () => alice.user(), dpopKeyPair: () => undefined, stepUp: async () => {} };
    const s = setup(counting, []);
    const plan: CallPlan = {
      connector: 'lab',
      tool: 'lab__create_ticket',
      tier: 2,
      reason: 'write call of create_ticket on lab',
      target: lab.upstream.url,
      authorizationDetails: [{ type: 'mcp_tool_call', locations: [lab.upstream.url], actions: ['call'], identifier: 'create_ticket', argument_digest: `sha256:${'0'.repeat(64)}` }],
      resource: lab.upstream.url,
      credential: { kind: 'obo' },
      bytes: '{}',
    };
    let used = false;
    const error = await s.credentials.withCredential(plan, async () => (used = true), AbortSignal.timeout(5_000)).catch((e: unknown) => e);
    expect(AppError.is(error, 'POLICY_BLOCKED')).toBe(true);
    expect({ used, reads, issued: s.issued.length }).toEqual({ used: false, reads: 0, issued: 0 });
    expect(s.audit.records).toMatchObject([{ kind: 'system', outcome: 'denied', error: { code: 'POLICY_BLOCKED' } }]);
  });

  it('refuses two upstreams with the same name', () => {
    const config = { name: 'twin', url: lab.upstream.url, allowInsecureHttpForLoopbackOnly: true };
    expect(() => createUpstreamConnectors([config, config], { credentials: main.credentials, tokens: alice })).toThrow(/named twin/);
  });
});

/**
 * A misbehaving upstream: a real MCP server (SDK, Streamable HTTP) with honest RFC 9728 metadata that
 * lists its tools normally, then answers calls with garbage, never, or not at all (stopped).
 */
type FlakyMode = 'ok' | 'garbage' | 'slow' | 'huge-json' | 'huge-sse';
async function startFlaky(): Promise<{ url: string; mode: { value: FlakyMode }; hugeCut: () => number; stop(): Promise<void> }> {
  const mode = { value: 'ok' as FlakyMode };
  /** Oversized answers the client hung up on before they were all sent. */
  let hugeCut = 0;
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  const server: Server = createServer((req, res) => {
    void (async () => {
      const path = new URL(req.url ?? '/', url).pathname;
      if (path === '/.well-known/oauth-protected-resource/mcp') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ resource: url, authorization_servers: [lab.idp.issuer] }));
        return;
      }
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as { method?: string }) : undefined;
      if (body?.method === 'tools/call' && mode.value === 'garbage') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('<html>this is not JSON-RPC');
        return;
      }
      if (body?.method === 'tools/call' && mode.value === 'slow') return; // never answers
      if (body?.method === 'tools/call' && mode.value.startsWith('huge')) {
        // 64 MiB of text, far more than one message of the bridge, as JSON or as an SSE event, written
        // a MiB at a time as the client reads it: a client that hangs up stops it before the end.
        const sse = mode.value === 'huge-sse';
        const head = `${sse ? 'event: message\ndata: ' : ''}{"jsonrpc":"2.0","id":${JSON.stringify((body as { id?: unknown }).id)},"result":{"content":[{"type":"text","text":"`;
        const MiB = 'z'.repeat(1024 * 1024);
        let sent = 0;
        res.once('close', () => void (res.writableFinished || (hugeCut += 1)));
        res.writeHead(200, { 'content-type': sse ? 'text/event-stream' : 'application/json' }).write(head);
        const pump = (): void => {
          while (sent < 64) {
            sent += 1;
            if (!res.write(MiB)) return void res.once('drain', pump);
          }
          res.end(`"}]}}${sse ? '\n\n' : ''}`);
        };
        pump();
        return;
      }
      const id = req.headers['mcp-session-id'];
      let transport = typeof id === 'string' ? sessions.get(id) : undefined;
      if (!transport) {
        const t = new StreamableHTTPServerTransport({ sessionIdGenerator: () => randomUUID(), onsessioninitialized: (sid) => void sessions.set(sid, t) });
        const mcp = new McpServer({ name: 'flaky', version: '1' });
        mcp.registerTool('echo', { inputSchema: { text: z.string() }, annotations: { readOnlyHint: true } }, async ({ text: t2 }) => ({ content: [{ type: 'text', text: t2 }] }));
        await mcp.connect(t);
        transport = t;
      }
      await transport.handleRequest(req, res, body);
    })().catch(() => res.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`;
  let stopped = false;
  return {
    url,
    mode,
    hugeCut: () => hugeCut,
    async stop() {
      if (stopped) return;
      stopped = true;
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await Promise.allSettled([...sessions.values()].map((t) => t.close()));
    },
  };
}

describe('an upstream that is down, slow or answers garbage', () => {
  it('answers each call with a clear isError and one audit record, within the upstream time-out, and keeps the other tools listed', async () => {
    const flaky = await startFlaky();
    closers.push(() => flaky.stop());
    const s = setup(alice, [{ name: 'flaky', url: flaky.url, issuer: lab.idp.issuer, allowInsecureHttpForLoopbackOnly: true, timeoutMs: 1_000 }], true);
    expect((await s.broker.listTools()).map((t) => t.name)).toContain('flaky__echo');
    expect(text(await s.broker.callTool(call('flaky__echo', { text: 'hi' })))).toBe('hi');

    const outcomes: Array<[string, string, number]> = [];
    for (const m of ['garbage', 'slow', 'huge-json', 'huge-sse', 'down'] as const) {
      if (m === 'down') await flaky.stop();
      else flaky.mode.value = m;
      const before = s.audit.records.filter((r) => r.kind === 'tool_call').length;
      const t0 = performance.now();
      const r = await s.broker.callTool(call('flaky__echo', { text: m }));
      const ms = performance.now() - t0;
      expect(r.isError, m).toBe(true);
      expect(ms, m).toBeLessThan(3_000);
      const records = s.audit.records.filter((x) => x.kind === 'tool_call').slice(before);
      expect(records, m).toHaveLength(1);
      outcomes.push([m, `${records[0]!.outcome} ${records[0]!.error?.code}`, Math.round(ms)]);
      expect(text(r)).toMatch(/^The upstream flaky .+\[[A-Z_]+\]$/);
    }
    expect(outcomes.map(([m, o]) => [m, o])).toEqual([
      ['garbage', 'error UPSTREAM_BAD_RESPONSE'],
      ['slow', 'timeout TIMEOUT'],
      ['huge-json', 'error RESULT_TOO_LARGE'],
      ['huge-sse', 'error RESULT_TOO_LARGE'],
      ['down', 'error UPSTREAM_UNAVAILABLE'],
    ]);
    // Neither oversized answer was read to its end: Countersign hung up on both.
    expect(flaky.hugeCut()).toBe(2);

    // A fresh listing while it is down leaves its tools out and keeps the database's; the reason is logged.
    const gone = lab.credentials({ tokens: alice });
    const listing = createUpstreamConnectors([{ name: 'gone', url: flaky.url, allowInsecureHttpForLoopbackOnly: true, timeoutMs: 1_000 }], { credentials: gone.credentials, tokens: alice });
    const withGone = lab.broker({ connectors: [createPostgresConnector({ policy: DEMO_POLICY, connection: lab.connection }), ...listing], tokens: alice, audit: gone.audit, credentials: gone.credentials });
    closers.push(() => withGone.broker.close());
    const names = (await withGone.broker.listTools()).map((x) => x.name);
    expect(names).toContain('query');
    expect(names.some((n) => n.startsWith('gone__'))).toBe(false);
    expect(lab.logs.core.some((l) => l.includes('tools of gone are left out') && l.includes('UPSTREAM_UNAVAILABLE'))).toBe(true);
  });
});
