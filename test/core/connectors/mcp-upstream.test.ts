import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { webcrypto } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calculateJwkThumbprint, exportJWK } from 'jose';
import { AppError } from '../../../common/errors.ts';
import { argumentDigest } from '../../../lab/upstream/canonical-json.ts';
import { startUpstream } from '../../../lab/upstream/index.ts';
import type { Upstream } from '../../../lab/upstream/index.ts';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLAUDE_TOOL_NAME, McpUpstreamConnector, fileListingCache, tierFor } from '../../../main/core/connectors/mcp-upstream/index.ts';
import type { CredentialBroker, UpstreamConfigInput } from '../../../main/core/connectors/mcp-upstream/index.ts';
import type { CallPlan, Credential, ExecuteContext } from '../../../main/core/connectors/types.ts';
import { startTestIssuer } from '../../lab/upstream-fixture.ts';
import type { TestIssuer } from '../../lab/upstream-fixture.ts';

/**
 * The broker's exchange and Vault legs are another module; here a stand-in mints OBO tokens with a test
 * issuer from the plan's RAR, shaped as the lab IdP issues them (tests against the lab IdP are below).
 */
let issuer: TestIssuer;
let upstream: Upstream;
let acr = 'urn:countersign:acr:pwd';
let dpop: webcrypto.CryptoKeyPair | undefined;
const minted: string[] = [];
const closers: Array<() => Promise<unknown>> = [];

async function mintFor(plan: CallPlan): Promise<string> {
  const cnf = dpop ? { cnf: { jkt: await calculateJwkThumbprint(await exportJWK(dpop.publicKey)) } } : {};
  const token = await issuer.mint({
    sub: 'alice-sub',
    aud: plan.resource ?? plan.audience,
    act: { sub: 'countersign-desktop' },
    client_id: 'countersign-desktop',
    acr,
    authorization_details: plan.authorizationDetails,
    vault_role: 'upstream-call',
    ...cnf,
  });
  minted.push(token);
  return token;
}

const withCredential: CredentialBroker = async (plan, use) => {
  if (plan.credential.kind === 'vault-kv') return use({ obo: await mintFor(plan), credential: { kind: 'api-key', apiKey: upstream.apiKey } });
  return use({ obo: await mintFor(plan), credential: { kind: 'obo' } });
};

function connector(config: Partial<UpstreamConfigInput> = {}, deps: { listingsDir?: string; broker?: CredentialBroker } = {}): McpUpstreamConnector {
  const c = new McpUpstreamConnector(
    { name: 'lab', url: upstream.url, issuer: issuer.issuer, allowInsecureHttpForLoopbackOnly: true, ...config },
    {
      withCredential: deps.broker ?? withCredential,
      dpopKeyPair: () => dpop,
      ...(deps.listingsDir ? { listings: fileListingCache(deps.listingsDir) } : {}),
    },
  );
  closers.push(() => c.close());
  return c;
}

async function run(
  c: McpUpstreamConnector,
  tool: string,
  args: Record<string, unknown>,
  extra: { signal?: AbortSignal; progress?: string[]; obo?: string; credential?: Credential } = {},
) {
  const plan = await c.plan(tool, args);
  const obo = extra.obo ?? (await mintFor(plan));
  const notes: Array<Record<string, string>> = [];
  const ctx: ExecuteContext = {
    plan,
    args,
    obo,
    oboJti: 'unused',
    credential: extra.credential ?? { kind: 'obo' },
    signal: extra.signal ?? new AbortController().signal,
    progress: (m) => extra.progress?.push(m),
    note: (k) => notes.push(k as Record<string, string>),
  };
  return { result: await c.execute(ctx), notes, plan };
}

async function rawServer(handler: Parameters<typeof createServer>[1]): Promise<{ url: string; server: Server }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/mcp`, server };
}

async function failure(promise: Promise<unknown>): Promise<AppError> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(AppError);
    return error as AppError;
  }
  throw new Error('expected a failure');
}

beforeAll(async () => {
  issuer = await startTestIssuer();
  upstream = await startUpstream({ issuer: issuer.issuer, jwksUri: issuer.jwksUri });
});
afterAll(async () => {
  for (const close of closers.reverse()) await close();
  await upstream?.stop();
  await issuer?.stop();
});

describe('tiers', () => {
  const rules = [
    { pattern: 'get_*', tier: 1 as const },
    { pattern: 'delete_*', tier: 4 as const },
    { pattern: 'drop_user', tier: 4 as const },
    { pattern: 'v1.read_?', tier: 1 as const },
  ];

  it('takes the first matching pattern, and lets annotations raise but never lower it', () => {
    expect(tierFor('get_weather', { readOnlyHint: true }, rules)).toBe(1);
    expect(tierFor('get_weather', { readOnlyHint: false }, rules)).toBe(2);
    expect(tierFor('get_secret', { readOnlyHint: false, destructiveHint: true }, rules)).toBe(3);
    expect(tierFor('delete_all', { readOnlyHint: true }, rules)).toBe(4);
    expect(tierFor('create_ticket', undefined, rules)).toBe(2);
    expect(tierFor('create_ticket', { destructiveHint: true }, rules)).toBe(3);
  });

  it('does not let an upstream that calls its tool read-only lower it below the policy: without a rule it is tier 2', () => {
    expect(tierFor('list_things', { readOnlyHint: true }, rules)).toBe(2);
    expect(tierFor('list_things', { readOnlyHint: true, destructiveHint: false, idempotentHint: true, openWorldHint: false }, rules)).toBe(2);
    expect(tierFor('delete_all', { readOnlyHint: true, destructiveHint: false }, rules)).toBe(4);
  });

  it('matches whole names: a trailing newline, a prefix or a suffix is another name', () => {
    expect(tierFor('drop_user\n', undefined, rules)).toBe(4); // not a governed name at all
    expect(tierFor('drop_user_x', undefined, rules)).toBe(2);
    expect(tierFor('x_drop_user', undefined, rules)).toBe(2);
    expect(tierFor('x_get_weather', { readOnlyHint: true }, rules)).toBe(2);
  });

  it('blocks names with fullwidth letters, zero-width or control characters instead of matching them against the policy', () => {
    for (const name of ['ｄrop_user', 'drop\u200b_user', 'drop_user\u200d', '\u202edrop_user', 'drop user', 'drop_user\r', 'get_weather\u0000', 'ɡet_weather', '']) {
      expect(tierFor(name, { readOnlyHint: true }, rules), JSON.stringify(name)).toBe(4);
    }
  });

  it('ignores case, so Drop_User is drop_user to the policy', () => {
    expect(tierFor('Drop_User', undefined, rules)).toBe(4);
    expect(tierFor('DELETE_ALL', { readOnlyHint: true }, rules)).toBe(4);
  });

  it('refuses a policy pattern that no governed tool name could match (a newline, a fullwidth letter, a space)', () => {
    const deps = { withCredential: (async () => undefined) as never, dpopKeyPair: () => undefined };
    for (const pattern of ['delete_user\n', 'ｄelete_*', 'delete\u200b_*', 'delete user']) {
      expect(() => new McpUpstreamConnector({ name: 'x', url: 'https://upstream.example/mcp', tools: [{ pattern, tier: 4 }] }, deps), JSON.stringify(pattern)).toThrow(
        expect.objectContaining({ code: 'CONFIG_INVALID' }),
      );
    }
  });

  it("treats a '.' in a pattern as a dot, not any character", () => {
    expect(tierFor('v1.read_a', undefined, rules)).toBe(1);
    expect(tierFor('v1xread_a', undefined, rules)).toBe(2);
    expect(tierFor('v1.read_ab', undefined, rules)).toBe(2);
  });
});

describe('identity-protected upstream', () => {
  it('lists the upstream tools namespaced, with tiers from policy and hints, and hides blocked ones', async () => {
    const c = connector({ tools: [{ pattern: 'get_*', tier: 1 }, { pattern: 'generate_*', tier: 3 }, { pattern: 'create_*', tier: 4 }] });
    const tools = await c.listTools();
    const byName = new Map(tools.map((t) => [t.name, t]));
    expect(byName.get('lab__get_weather')?.annotations?.readOnlyHint).toBe(true);
    expect(byName.get('lab__approve_payment')?.annotations).toMatchObject({ readOnlyHint: false, destructiveHint: true });
    expect(byName.get('lab__generate_report')?.annotations).toMatchObject({ readOnlyHint: false, destructiveHint: true });
    expect(byName.has('lab__create_ticket')).toBe(false);
    expect(c.hasTool('lab__get_weather')).toBe(true);
    await expect(c.plan('lab__create_ticket', { title: 'x' })).rejects.toMatchObject({ code: 'POLICY_BLOCKED' });
    expect((await c.plan('lab__approve_payment', { payment_id: 'P', amount: 1 })).tier).toBe(3);
    expect(c.metadata?.resource).toBe(upstream.url);
  });

  it('plans a call as an mcp_tool_call RAR whose digest the upstream computes identically', async () => {
    const c = connector();
    const args = { title: 'Printer on fire', body: 'third floor' };
    const plan = await c.plan('lab__create_ticket', args);
    expect(plan).toMatchObject({
      connector: 'lab',
      tier: 2,
      resource: upstream.url,
      credential: { kind: 'obo' },
      bytes: '{"body":"third floor","title":"Printer on fire"}',
      authorizationDetails: [
        { type: 'mcp_tool_call', locations: [upstream.url], actions: ['call'], identifier: 'create_ticket', argument_digest: argumentDigest(args) },
      ],
    });
    await expect(c.plan('lab__create_ticket', { title: 42 })).rejects.toMatchObject({ code: 'INPUT_INVALID' });
    await expect(c.plan('lab__nope', {})).rejects.toMatchObject({ code: 'TOOL_UNKNOWN' });
  });

  it('calls a tool with a fresh OBO per call; the upstream sees its own audience, the user and Countersign as actor', async () => {
    const c = connector();
    const first = await run(c, 'lab__get_weather', { city: 'Lyon' });
    const second = await run(c, 'lab__get_weather', { city: 'Nice' });
    expect(JSON.stringify(first.result.content)).toContain('Weather in Lyon for alice-sub');
    expect(JSON.stringify(second.result.content)).toContain('Nice');
    const calls = upstream.calls().slice(-2);
    expect(calls.map((x) => x.tool)).toEqual(['get_weather', 'get_weather']);
    expect(calls[0]?.jti).not.toBe(calls[1]?.jti);
    const seen = upstream.seen().find((s) => s.jti === calls[1]?.jti);
    expect(seen).toMatchObject({ aud: upstream.url, sub: 'alice-sub', act: { sub: 'countersign-desktop' } });
    expect(first.notes[0]?.upstream_request_id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("is refused by the upstream when handed the user's own access token instead of an OBO", async () => {
    const c = connector();
    const userToken = await issuer.mint({ sub: 'alice-sub', aud: 'urn:countersign:app', client_id: 'countersign-desktop' });
    const error = await failure(run(c, 'lab__get_weather', { city: 'Lyon' }, { obo: userToken }));
    expect(error.code).toBe('UPSTREAM_DENIED');
    expect(error.message).toContain('invalid_token');
    expect(error.message).not.toContain(userToken);
  });

  it('turns an RFC 9470 challenge into IDP_STEP_UP_REQUIRED with the demanded acr, and succeeds after a stronger login', async () => {
    const c = connector();
    const args = { payment_id: 'P-7', amount: 12.5 };
    const error = await failure(run(c, 'lab__approve_payment', args));
    expect(error.code).toBe('IDP_STEP_UP_REQUIRED');
    expect(error.stepUp).toEqual({ acrValues: 'urn:countersign:acr:mfa' });
    expect(minted.some((t) => error.message.includes(t))).toBe(false);
    acr = 'urn:countersign:acr:mfa';
    try {
      const { result } = await run(c, 'lab__approve_payment', args);
      expect(JSON.stringify(result.content)).toContain('Payment P-7 of 12.5 approved');
    } finally {
      acr = 'urn:countersign:acr:pwd';
    }
  });

  it('presents a DPoP-bound OBO with a fresh proof per request, and refuses one bound to another key', async () => {
    dpop = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    try {
      const c = connector();
      const { result } = await run(c, 'lab__get_weather', { city: 'Bergen' });
      expect(JSON.stringify(result.content)).toContain('Bergen');
      expect(upstream.seen().at(-1)?.dpop).toBe(true);
      const plan = await c.plan('lab__get_weather', { city: 'Bergen' });
      const bound = await mintFor(plan);
      dpop = (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
      const error = await failure(run(c, 'lab__get_weather', { city: 'Bergen' }, { obo: bound }));
      expect(error.code).toBe('OBO_INVALID');
    } finally {
      dpop = undefined;
    }
  });

  it('passes progress through and honours cancellation', async () => {
    const c = connector();
    const progress: string[] = [];
    const { result } = await run(c, 'lab__generate_report', { steps: 3, step_ms: 20 }, { progress });
    expect(JSON.stringify(result.content)).toContain('Report of 3 steps ready');
    expect(progress).toEqual(['step 1 of 3', 'step 2 of 3', 'step 3 of 3']);

    const controller = new AbortController();
    const started = Date.now();
    const cancelled = upstream.cancelled().length;
    setTimeout(() => controller.abort(), 150);
    const error = await failure(run(c, 'lab__generate_report', { steps: 5, step_ms: 2_000 }, { signal: controller.signal }));
    expect(error.code).toBe('CANCELLED');
    expect(Date.now() - started).toBeLessThan(2_000);
    // The upstream's own handler was told (notifications/cancelled): the tool does not run on.
    await expect.poll(() => upstream.cancelled().slice(cancelled), { timeout: 5_000 }).toMatchObject([{ tool: 'generate_report' }]);
  });

  it('gives up on a slow upstream with TIMEOUT, and tells the upstream to stop', async () => {
    const c = connector({ timeoutMs: 300 });
    const started = Date.now();
    const cancelled = upstream.cancelled().length;
    const error = await failure(run(c, 'lab__generate_report', { steps: 2, step_ms: 5_000 }));
    expect(error.code).toBe('TIMEOUT');
    expect(Date.now() - started).toBeLessThan(1_500);
    await expect.poll(() => upstream.cancelled().slice(cancelled), { timeout: 5_000 }).toMatchObject([{ tool: 'generate_report' }]);
  });

  it("does not announce the list a client's own listing hands out, and announces one that differs from it", async () => {
    const c = connector();
    let announced = 0;
    c.onToolsChanged(() => (announced += 1));
    await c.listTools();
    await c.warm();
    await c.refresh();
    expect(announced).toBe(0);
    upstream.addTool('summarize_text');
    await c.refresh();
    expect(announced).toBe(1);
    await c.listTools();
    await c.refresh();
    expect(announced).toBe(1);
  });

  it('refreshes its tool list on notifications/tools/list_changed', async () => {
    const c = connector({ tools: [{ pattern: 'translate_*', tier: 1 }] });
    await c.listTools();
    const changed = new Promise<void>((resolve) => c.onToolsChanged(resolve));
    upstream.addTool('translate_text');
    await changed;
    expect((await c.listTools()).map((t) => t.name)).toContain('lab__translate_text');
    expect((await c.plan('lab__translate_text', { text: 'hej' })).tier).toBe(1);
  });
});

describe('names Claude Desktop accepts', () => {
  it('lists a 100-character tool under a valid, stable name that keeps the original in its title, description and _meta', async () => {
    const long = `export_${'quarterly_'.repeat(10)}report`.slice(0, 100);
    expect(long).toHaveLength(100);
    upstream.addTool(long);
    const c = connector();
    const listed = (await c.listTools()).find((t) => t._meta?.['countersign/tool'] === long);
    expect(listed).toBeDefined();
    expect(listed!.name).toMatch(CLAUDE_TOOL_NAME);
    expect(listed!.name).toMatch(/^lab__export_quarterly_.*_[0-9a-f]{8}$/);
    expect(listed!.title).toBe(long);
    expect(listed!.description).toContain(`tool ${long} of lab`);
    expect(listed!._meta).toMatchObject({ 'countersign/upstream': 'lab', 'countersign/tool': long });
    // the same name from another connector (another run), and a call by it reaches the long-named tool
    const again = connector();
    expect((await again.listTools()).map((t) => t.name)).toContain(listed!.name);
    const { result, plan } = await run(again, listed!.name, { text: 'long names' });
    expect(plan.authorizationDetails[0]).toMatchObject({ identifier: long });
    expect(plan.reason).toContain(long);
    expect(result.content).toEqual([{ type: 'text', text: 'long names' }]);
  });

  it('lists every tool with a name and a top-level object schema that Claude Desktop accepts', async () => {
    const tools = await connector().listTools();
    expect(tools.length).toBeGreaterThan(3);
    for (const t of tools) {
      expect(t.name).toMatch(CLAUDE_TOOL_NAME);
      expect(t.inputSchema.type).toBe('object');
    }
  });
});

describe('the kept listing', () => {
  it('lists the last listing after a restart without asking the upstream, and plans a call only after a fresh one', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cs-listings-'));
    closers.push(() => rm(dir, { recursive: true, force: true }));
    const first = await connector({}, { listingsDir: dir }).listTools();
    const file = join(dir, 'lab.json');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(dir)).mode & 0o777).toBe(0o700);
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const kept = await readFile(file, 'utf8');
    for (const secret of minted) expect(kept).not.toContain(secret.split('.')[1]);

    let asked = 0;
    const signedOut: CredentialBroker = async () => {
      asked += 1;
      throw new AppError('NOT_SIGNED_IN', 'You are not signed in.');
    };
    const restarted = connector({}, { listingsDir: dir, broker: signedOut });
    expect(await restarted.listTools()).toEqual(first);
    expect(asked).toBe(0);
    expect(restarted.hasTool('lab__get_weather')).toBe(true);
    await expect(restarted.plan('lab__get_weather', { city: 'Oslo' })).rejects.toMatchObject({ code: 'NOT_SIGNED_IN' });
    expect(asked).toBe(1);
  });

  it('ignores a kept listing others may write, one for another URL, and one that is not a listing', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cs-listings-'));
    closers.push(() => rm(dir, { recursive: true, force: true }));
    await connector({}, { listingsDir: dir }).listTools();
    const file = join(dir, 'lab.json');
    const cache = fileListingCache(dir);
    expect(cache.read('lab', upstream.url)).toBeDefined();
    expect(cache.read('lab', `${upstream.url}/other`)).toBeUndefined();
    const { chmod } = await import('node:fs/promises');
    await chmod(file, 0o666);
    expect(cache.read('lab', upstream.url)).toBeUndefined();
    await writeFile(file, '{"format":1,"tools":"no"}', { mode: 0o600 });
    await chmod(file, 0o600);
    expect(cache.read('lab', upstream.url)).toBeUndefined();
  });
});

describe('refusals and faults', () => {
  it('refuses an upstream whose metadata names another resource, before any token is requested', async () => {
    const { url } = await rawServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ resource: upstream.url, authorization_servers: [issuer.issuer] }));
    });
    const before = minted.length;
    const c = connector({ name: 'evil', url });
    const error = await failure(c.listTools());
    expect(error.code).toBe('UPSTREAM_METADATA_MISMATCH');
    expect(minted.length).toBe(before);
  });

  it('refuses an upstream whose metadata names another authorization server', async () => {
    const { url } = await rawServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ resource: url, authorization_servers: ['http://127.0.0.1:9/'] }));
    });
    const error = await failure(connector({ name: 'other', url }).listTools());
    expect(error.code).toBe('UPSTREAM_METADATA_MISMATCH');
  });

  it('reports an upstream that is down as UPSTREAM_UNAVAILABLE', async () => {
    const { url, server } = await rawServer(() => {});
    await new Promise<void>((r) => server.close(() => r()));
    const error = await failure(connector({ name: 'down', url }).listTools());
    expect(error.code).toBe('UPSTREAM_UNAVAILABLE');
  });

  it('reports garbage answers as UPSTREAM_BAD_RESPONSE', async () => {
    const { url } = await rawServer((req, res) => {
      if (req.url?.startsWith('/.well-known/')) {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ resource: url, authorization_servers: [issuer.issuer] }));
      } else res.writeHead(200, { 'content-type': 'application/json' }).end('{"not":"json-rpc"}');
    });
    const error = await failure(connector({ name: 'junk', url }).listTools());
    expect(error.code).toBe('UPSTREAM_BAD_RESPONSE');
  });

  it('refuses plain http to a non-loopback host and loopback http without the insecure switch', () => {
    const deps = { withCredential, dpopKeyPair: () => undefined };
    expect(() => new McpUpstreamConnector({ name: 'x', url: 'http://example.com/mcp', allowInsecureHttpForLoopbackOnly: true }, deps)).toThrow(
      expect.objectContaining({ code: 'CONFIG_INVALID' }),
    );
    expect(() => new McpUpstreamConnector({ name: 'x', url: upstream.url }, deps)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});

describe('API-key upstream', () => {
  it('plans an api_key RAR for Vault and calls with the key only for that call', async () => {
    const c = connector({ name: 'quotes', url: upstream.apiKeyUrl, auth: 'api-key', apiKey: { path: 'upstreams/apikey-demo' } });
    expect((await c.listTools()).map((t) => t.name)).toEqual(['quotes__get_quote']);
    const plan = await c.plan('quotes__get_quote', { symbol: 'ACME' });
    expect(plan).toMatchObject({
      audience: 'countersign-vault',
      authorizationDetails: [{ type: 'api_key', locations: [upstream.apiKeyUrl], actions: ['read'], identifier: 'quotes' }],
      credential: { kind: 'vault-kv', authMount: 'jwt', role: 'upstream-apikey', kvMount: 'secret', path: 'upstreams/apikey-demo', field: 'api_key' },
    });
    const { result } = await run(c, 'quotes__get_quote', { symbol: 'ACME' }, { credential: { kind: 'api-key', apiKey: upstream.apiKey } });
    expect(JSON.stringify(result.content)).toContain('ACME: 123.45');
    const error = await failure(run(c, 'quotes__get_quote', { symbol: 'ACME' }, { credential: { kind: 'api-key', apiKey: 'wrong-key' } }));
    expect(error.code).toBe('UPSTREAM_DENIED');
  });
});

it('measures a fresh connection per call', async () => {
  const c = connector();
  await c.listTools();
  const ms: number[] = [];
  for (let i = 0; i < 15; i++) {
    const started = performance.now();
    await run(c, 'lab__get_weather', { city: `C${i}` });
    ms.push(performance.now() - started);
  }
  ms.sort((a, b) => a - b);
  const median = ms[Math.floor(ms.length / 2)] ?? 0;
  console.log(`per-call connect+initialize+call+terminate (incl. minting): median ${median.toFixed(1)} ms, max ${ms.at(-1)?.toFixed(1)} ms`);
  expect(median).toBeLessThan(250);
});
