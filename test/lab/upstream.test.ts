import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { generateKeyPair } from 'jose';
import { startUpstream } from '../../lab/upstream/index.ts';
import type { Upstream } from '../../lab/upstream/index.ts';
import { callClaims, dpopKey, dpopProof, startTestIssuer } from './upstream-fixture.ts';
import type { TestIssuer } from './upstream-fixture.ts';

let issuer: TestIssuer;
let upstream: Upstream;

beforeAll(async () => {
  issuer = await startTestIssuer();
  upstream = await startUpstream({ issuer: issuer.issuer, jwksUri: issuer.jwksUri, apiKey: 'lab-key-123' });
});
afterAll(async () => {
  await upstream?.stop();
  await issuer?.stop();
});

const INIT = {
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'test', version: '1' } },
};

function initialize(url: string, headers: Record<string, string>) {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers },
    body: JSON.stringify(INIT),
  });
}

/** An SDK client whose every request carries the given headers (a fresh DPoP proof per request when keyed). */
async function connect(
  url: string,
  auth: { token?: string; dpop?: Awaited<ReturnType<typeof dpopKey>>; apiKey?: string },
): Promise<Client> {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    fetch: async (input, init) => {
      const headers = new Headers(init?.headers);
      const method = init?.method ?? 'GET';
      if (auth.token && auth.dpop) {
        headers.set('authorization', `DPoP ${auth.token}`);
        headers.set('dpop', await dpopProof(auth.dpop, method, url, auth.token));
      } else if (auth.token) headers.set('authorization', `Bearer ${auth.token}`);
      if (auth.apiKey) headers.set('x-api-key', auth.apiKey);
      return fetch(input, { ...init, headers });
    },
  });
  const client = new Client({ name: 'test', version: '1' });
  await client.connect(transport);
  return client;
}

function challengeOf(response: Response): string {
  return response.headers.get('www-authenticate') ?? '';
}

describe('identity-protected upstream', () => {
  it('publishes RFC 9728 metadata naming its own URL and the issuer', async () => {
    const response = await fetch(upstream.metadataUrl);
    expect(response.status).toBe(200);
    const body = (await response.json()) as { resource: string; authorization_servers: string[] };
    expect(body.resource).toBe(upstream.url);
    expect(body.authorization_servers).toEqual([issuer.issuer]);
  });

  it('answers a request without a token with 401 and a resource_metadata challenge', async () => {
    const response = await initialize(upstream.url, {});
    expect(response.status).toBe(401);
    expect(challengeOf(response)).toBe(`Bearer resource_metadata="${upstream.metadataUrl}"`);
  });

  it('runs a call whose token names this upstream and describes the call, and records its claims', async () => {
    const args = { city: 'Lyon' };
    const token = await issuer.mint(callClaims(upstream.url, 'get_weather', args));
    const client = await connect(upstream.url, { token });
    try {
      const tools = await client.listTools();
      expect(tools.tools.map((t) => t.name)).toEqual(
        expect.arrayContaining(['get_weather', 'create_ticket', 'approve_payment', 'generate_report']),
      );
      const result = await client.callTool({ name: 'get_weather', arguments: args });
      expect(result.isError).toBeFalsy();
      expect(JSON.stringify(result.content)).toContain('Weather in Lyon for alice-sub');
    } finally {
      await client.close();
    }
    const seen = upstream.seen().at(-1);
    expect(seen).toMatchObject({ sub: 'alice-sub', aud: upstream.url, act: { sub: 'countersign-desktop' }, dpop: false });
    expect(upstream.calls().at(-1)).toMatchObject({ jti: seen?.jti, tool: 'get_weather' });
  });

  it("refuses the user's own access token (audience urn:countersign:app): no token passthrough", async () => {
    const token = await issuer.mint({ sub: 'alice-sub', aud: 'urn:countersign:app', client_id: 'countersign-desktop' });
    const response = await initialize(upstream.url, { authorization: `Bearer ${token}` });
    expect(response.status).toBe(401);
    expect(challengeOf(response)).toContain('error="invalid_token"');
  });

  it("refuses a token issued for another upstream's audience", async () => {
    const other = 'http://127.0.0.1:1/mcp';
    const token = await issuer.mint(callClaims(other, 'get_weather', { city: 'Lyon' }));
    const response = await initialize(upstream.url, { authorization: `Bearer ${token}` });
    expect(response.status).toBe(401);
    expect(challengeOf(response)).toContain('error="invalid_token"');
  });

  it('refuses a token signed by a key outside the IdP JWKS', async () => {
    const { privateKey } = await generateKeyPair('ES256');
    const token = await issuer.mint(callClaims(upstream.url, 'get_weather', { city: 'Lyon' }), { key: privateKey });
    const response = await initialize(upstream.url, { authorization: `Bearer ${token}` });
    expect(response.status).toBe(401);
  });

  it('refuses an expired token', async () => {
    const token = await issuer.mint(callClaims(upstream.url, 'get_weather', { city: 'Lyon' }), { lifetime: -120 });
    const response = await initialize(upstream.url, { authorization: `Bearer ${token}` });
    expect(response.status).toBe(401);
  });

  it('refuses a replayed jti in a new session', async () => {
    const token = await issuer.mint(callClaims(upstream.url, 'get_weather', { city: 'Lyon' }));
    const first = await initialize(upstream.url, { authorization: `Bearer ${token}` });
    expect(first.status).toBe(200);
    await first.body?.cancel();
    const replay = await initialize(upstream.url, { authorization: `Bearer ${token}` });
    expect(replay.status).toBe(401);
    expect(challengeOf(replay)).toContain('error="invalid_token"');
  });

  it('refuses a second call with the same token', async () => {
    const args = { city: 'Oslo' };
    const token = await issuer.mint(callClaims(upstream.url, 'get_weather', args));
    const client = await connect(upstream.url, { token });
    try {
      await client.callTool({ name: 'get_weather', arguments: args });
      await expect(client.callTool({ name: 'get_weather', arguments: args })).rejects.toMatchObject({ code: 401 });
    } finally {
      await client.close();
    }
  });

  it('refuses a call whose arguments differ from the digest in the token', async () => {
    const token = await issuer.mint(callClaims(upstream.url, 'create_ticket', { title: 'small' }));
    const client = await connect(upstream.url, { token });
    try {
      await expect(client.callTool({ name: 'create_ticket', arguments: { title: 'something else' } })).rejects.toMatchObject({
        code: 403,
      });
    } finally {
      await client.close();
    }
    expect(upstream.calls().some((c) => c.tool === 'create_ticket')).toBe(false);
  });

  it('refuses a session request made with another token than the one that opened it', async () => {
    const args = { city: 'Rome' };
    const token = await issuer.mint(callClaims(upstream.url, 'get_weather', args));
    const first = await initialize(upstream.url, { authorization: `Bearer ${token}` });
    const sessionId = first.headers.get('mcp-session-id') ?? '';
    await first.body?.cancel();
    const other = await issuer.mint(callClaims(upstream.url, 'get_weather', args));
    const response = await fetch(upstream.url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        accept: 'application/json, text/event-stream',
        authorization: `Bearer ${other}`,
        'mcp-session-id': sessionId,
        'mcp-protocol-version': '2025-06-18',
      },
      body: JSON.stringify({ jsonrpc: '2.0', id: 2, method: 'tools/list' }),
    });
    expect(response.status).toBe(401);
  });

  describe('DPoP-bound tokens (RFC 9449 §7)', () => {
    it('refuses a bound token presented without a proof', async () => {
      const key = await dpopKey();
      const token = await issuer.mint(callClaims(upstream.url, 'get_weather', { city: 'Lyon' }, { cnf: { jkt: key.jkt } }));
      const asBearer = await initialize(upstream.url, { authorization: `Bearer ${token}` });
      expect(asBearer.status).toBe(401);
      const noProof = await initialize(upstream.url, { authorization: `DPoP ${token}` });
      expect(noProof.status).toBe(401);
      expect(challengeOf(noProof)).toContain('error="invalid_dpop_proof"');
    });

    it('refuses a proof signed by another key than the bound one', async () => {
      const key = await dpopKey();
      const thief = await dpopKey();
      const token = await issuer.mint(callClaims(upstream.url, 'get_weather', { city: 'Lyon' }, { cnf: { jkt: key.jkt } }));
      const response = await initialize(upstream.url, {
        authorization: `DPoP ${token}`,
        dpop: await dpopProof(thief, 'POST', upstream.url, token),
      });
      expect(response.status).toBe(401);
      expect(challengeOf(response)).toContain('error="invalid_dpop_proof"');
    });

    it('refuses a replayed proof', async () => {
      const key = await dpopKey();
      const token = await issuer.mint(callClaims(upstream.url, 'get_weather', { city: 'Lyon' }, { cnf: { jkt: key.jkt } }));
      const proof = await dpopProof(key, 'POST', upstream.url, token);
      const first = await initialize(upstream.url, { authorization: `DPoP ${token}`, dpop: proof });
      expect(first.status).toBe(200);
      const sessionId = first.headers.get('mcp-session-id') ?? '';
      await first.body?.cancel();
      const replay = await fetch(upstream.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          authorization: `DPoP ${token}`,
          dpop: proof,
          'mcp-session-id': sessionId,
        },
        body: JSON.stringify({ jsonrpc: '2.0', method: 'notifications/initialized' }),
      });
      expect(replay.status).toBe(401);
    });

    it('accepts a bound token with a fresh proof per request', async () => {
      const key = await dpopKey();
      const args = { city: 'Porto' };
      const token = await issuer.mint(callClaims(upstream.url, 'get_weather', args, { cnf: { jkt: key.jkt } }));
      const client = await connect(upstream.url, { token, dpop: key });
      try {
        const result = await client.callTool({ name: 'get_weather', arguments: args });
        expect(JSON.stringify(result.content)).toContain('Porto');
      } finally {
        await client.close();
      }
      expect(upstream.seen().at(-1)?.dpop).toBe(true);
    });
  });

  describe('RFC 9470 step-up', () => {
    it('answers approve_payment under a password login with insufficient_user_authentication', async () => {
      const args = { payment_id: 'P-1', amount: 40 };
      const token = await issuer.mint(callClaims(upstream.url, 'approve_payment', args));
      const init = await initialize(upstream.url, { authorization: `Bearer ${token}` });
      const sessionId = init.headers.get('mcp-session-id') ?? '';
      await init.body?.cancel();
      const response = await fetch(upstream.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          authorization: `Bearer ${token}`,
          'mcp-session-id': sessionId,
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 3, method: 'tools/call', params: { name: 'approve_payment', arguments: args } }),
      });
      expect(response.status).toBe(401);
      const challenge = challengeOf(response);
      expect(challenge).toMatch(/^Bearer /);
      expect(challenge).toContain('error="insufficient_user_authentication"');
      expect(challenge).toContain('acr_values="urn:countersign:acr:mfa"');
    });

    it('runs approve_payment under an MFA login', async () => {
      const args = { payment_id: 'P-2', amount: 40 };
      const token = await issuer.mint(callClaims(upstream.url, 'approve_payment', args, { acr: 'urn:countersign:acr:mfa' }));
      const client = await connect(upstream.url, { token });
      try {
        const result = await client.callTool({ name: 'approve_payment', arguments: args });
        expect(JSON.stringify(result.content)).toContain('Payment P-2 of 40 approved');
      } finally {
        await client.close();
      }
    });
  });

  it('notifies open sessions when its tool list changes', async () => {
    const token = await issuer.mint(callClaims(upstream.url, 'get_weather', {}));
    const client = await connect(upstream.url, { token });
    try {
      const changed = new Promise<void>((resolve) => client.setNotificationHandler(ToolListChangedNotificationSchema, () => resolve()));
      await client.listTools();
      await new Promise((r) => setTimeout(r, 200));
      const name = `echo_${randomUUID().slice(0, 8)}`;
      upstream.addTool(name);
      await changed;
      expect((await client.listTools()).tools.map((t) => t.name)).toContain(name);
    } finally {
      await client.close();
    }
  });
});

describe('API-key upstream', () => {
  it('refuses requests without the key or with a wrong key', async () => {
    expect((await initialize(upstream.apiKeyUrl, {})).status).toBe(401);
    expect((await initialize(upstream.apiKeyUrl, { 'x-api-key': 'lab-key-124' })).status).toBe(401);
  });

  it('answers tools with the right X-API-Key', async () => {
    const client = await connect(upstream.apiKeyUrl, { apiKey: upstream.apiKey });
    try {
      const result = await client.callTool({ name: 'get_quote', arguments: { symbol: 'ACME' } });
      expect(JSON.stringify(result.content)).toContain('ACME: 123.45');
    } finally {
      await client.close();
    }
  });
});

it('leaves no listening port after stop()', async () => {
  const own = await startUpstream({ issuer: issuer.issuer, jwksUri: issuer.jwksUri });
  await own.stop();
  await expect(fetch(own.metadataUrl)).rejects.toThrow();
  await expect(fetch(own.apiKeyUrl)).rejects.toThrow();
});
