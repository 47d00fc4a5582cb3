/**
 * The lab's upstream MCP servers (Streamable HTTP on 127.0.0.1, random ports):
 * - an identity-protected one that publishes RFC 9728 metadata and accepts only IdP-issued JWTs whose
 *   `aud` is its own URL (no token passthrough), each `jti` for one session and one tool call, DPoP
 *   proofs for bound tokens (RFC 9449 §7), a RAR that names the exact call, and RFC 9470
 *   `insufficient_user_authentication` for tools that need an MFA login;
 * - an API-key one that answers only requests carrying the right `X-API-Key`.
 */
import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { argumentDigest } from './canonical-json.ts';
import { Refusal, TokenChecker } from './token-check.ts';
import type { AcceptedToken } from './token-check.ts';
import { ACR_MFA, MFA_TOOLS, registerApiKeyTools, registerEchoTool, registerIdentityTools } from './tools.ts';

export interface UpstreamOptions {
  /** The IdP's issuer, `http://127.0.0.1:<port>` without a trailing slash. */
  issuer: string;
  jwksUri: string;
  /** The API-key upstream's key; random when omitted. */
  apiKey?: string;
}

/** Claims of a token the identity-protected upstream accepted (for tests). */
export interface SeenToken {
  jti: string;
  sub: string;
  aud: string | string[];
  act?: Record<string, unknown>;
  acr?: string;
  dpop: boolean;
}

export interface SeenCall {
  jti: string;
  tool: string;
  argumentDigest: string;
}

export interface Upstream {
  /** The identity-protected MCP endpoint, `http://127.0.0.1:<port>/mcp`. */
  url: string;
  /** `http://127.0.0.1:<port>/.well-known/oauth-protected-resource/mcp` (RFC 9728 §3). */
  metadataUrl: string;
  /** The API-key MCP endpoint. */
  apiKeyUrl: string;
  apiKey: string;
  seen(): SeenToken[];
  calls(): SeenCall[];
  /** Calls whose handler the client cancelled (notifications/cancelled), with the reason it gave. */
  cancelled(): Array<{ tool: string; reason: string }>;
  /** Requests the API-key upstream answered (the key itself is never recorded). */
  apiKeyRequests(): number;
  /** Adds a read-only echo tool to every session, which sends `notifications/tools/list_changed`. */
  addTool(name: string): void;
  stop(): Promise<void>;
}

interface Session {
  transport: StreamableHTTPServerTransport;
  server: McpServer;
  jti?: string;
  sub?: string;
  calls: number;
}

const MAX_BODY = 1 << 20;

export async function startUpstream(options: UpstreamOptions): Promise<Upstream> {
  const apiKey = options.apiKey ?? randomBytes(24).toString('base64url');
  const seen: SeenToken[] = [];
  const calls: SeenCall[] = [];
  const cancellations: Array<{ tool: string; reason: string }> = [];
  const extraTools: string[] = [];
  const usedJtis = new Map<string, number>();
  const identitySessions = new Map<string, Session>();
  const apiKeySessions = new Map<string, Session>();
  let apiKeyRequests = 0;

  const identityHttp = createServer();
  const apiKeyHttp = createServer();
  const identityPort = await listen(identityHttp);
  const apiKeyPort = await listen(apiKeyHttp);
  const url = `http://127.0.0.1:${identityPort}/mcp`;
  const metadataUrl = `http://127.0.0.1:${identityPort}/.well-known/oauth-protected-resource/mcp`;
  const apiKeyUrl = `http://127.0.0.1:${apiKeyPort}/mcp`;
  const checker = new TokenChecker({ issuer: options.issuer, jwksUri: options.jwksUri, resource: url, metadataUrl });

  const metadata = {
    resource: url,
    authorization_servers: [options.issuer],
    bearer_methods_supported: ['header'],
    resource_name: 'Countersign lab upstream',
    authorization_details_types_supported: ['mcp_tool_call'],
    dpop_signing_alg_values_supported: ['ES256', 'EdDSA', 'RS256', 'PS256'],
  };

  identityHttp.on('request', (req, res) => {
    void handleIdentity(req, res).catch((error: unknown) => fail(res, error));
  });
  apiKeyHttp.on('request', (req, res) => {
    void handleApiKey(req, res).catch((error: unknown) => fail(res, error));
  });

  async function handleIdentity(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', url).pathname;
    if (path === '/.well-known/oauth-protected-resource/mcp' && req.method === 'GET') {
      return json(res, 200, metadata);
    }
    if (path !== '/mcp') return json(res, 404, { error: 'not_found' });
    res.setHeader('x-request-id', randomUUID());

    const token = await checker.check(req);
    const body = req.method === 'POST' ? await readJson(req) : undefined;
    const messages = Array.isArray(body) ? body : body === undefined ? [] : [body];
    const sessionId = header(req, 'mcp-session-id');
    let session: Session | undefined;
    if (sessionId === undefined) {
      if (!messages.some((m) => isRequest(m, 'initialize'))) return rpcError(res, 400, 'a session starts with initialize');
      pruneJtis();
      if (usedJtis.has(token.jti)) throw checker.invalid('the token was already used', token.dpopBound ? 'DPoP' : 'Bearer');
      usedJtis.set(token.jti, token.exp);
      session = newSession(identitySessions, (server) => {
        registerIdentityTools(server, () => token.sub, (tool, reason) => cancellations.push({ tool, reason }));
        for (const name of extraTools) registerEchoTool(server, name);
      });
      session.jti = token.jti;
      session.sub = token.sub;
      seen.push({ jti: token.jti, sub: token.sub, aud: token.aud, act: token.act, acr: token.acr, dpop: token.dpopBound });
    } else {
      session = identitySessions.get(sessionId);
      if (!session) return rpcError(res, 404, 'unknown session');
      if (session.jti !== token.jti || session.sub !== token.sub) {
        throw checker.invalid('the token is not the one this session started with', token.dpopBound ? 'DPoP' : 'Bearer');
      }
    }
    for (const message of messages) {
      if (!isRequest(message, 'tools/call')) continue;
      authorizeCall(token, session, message.params);
    }
    await session.transport.handleRequest(req, res, body);
  }

  /** One tool call per token, described exactly by the token's `mcp_tool_call` RAR. */
  function authorizeCall(token: AcceptedToken, session: Session, params: unknown): void {
    const { name, arguments: args } = (params ?? {}) as { name?: unknown; arguments?: unknown };
    if (typeof name !== 'string') return;
    const scheme = token.dpopBound ? 'DPoP' : 'Bearer';
    if (session.calls >= 1) throw checker.invalid('the token has already been used for a call', scheme);
    const digest = argumentDigest(args ?? {});
    const described = token.authorizationDetails.some(
      (d) =>
        d.type === 'mcp_tool_call' &&
        Array.isArray(d.locations) &&
        d.locations.includes(url) &&
        Array.isArray(d.actions) &&
        d.actions.includes('call') &&
        d.identifier === name &&
        d.argument_digest === digest,
    );
    if (!described) {
      throw new Refusal(
        403,
        checker.challenge(scheme, { error: 'insufficient_scope', error_description: 'the token does not describe this call' }),
        'RAR mismatch',
      );
    }
    if (MFA_TOOLS.has(name) && token.acr !== ACR_MFA) {
      throw new Refusal(
        401,
        checker.challenge(scheme, {
          error: 'insufficient_user_authentication',
          error_description: `${name} needs a multi-factor login`,
          acr_values: ACR_MFA,
        }),
        'step-up required',
      );
    }
    session.calls += 1;
    calls.push({ jti: token.jti, tool: name, argumentDigest: digest });
  }

  async function handleApiKey(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (new URL(req.url ?? '/', apiKeyUrl).pathname !== '/mcp') return json(res, 404, { error: 'not_found' });
    const presented = header(req, 'x-api-key');
    if (presented === undefined || !sameSecret(presented, apiKey)) {
      res.setHeader('www-authenticate', 'ApiKey header="X-API-Key"');
      return json(res, 401, { error: 'invalid_api_key' });
    }
    apiKeyRequests += 1;
    const body = req.method === 'POST' ? await readJson(req) : undefined;
    const messages = Array.isArray(body) ? body : body === undefined ? [] : [body];
    const sessionId = header(req, 'mcp-session-id');
    let session: Session | undefined;
    if (sessionId === undefined) {
      if (!messages.some((m) => isRequest(m, 'initialize'))) return rpcError(res, 400, 'a session starts with initialize');
      session = newSession(apiKeySessions, registerApiKeyTools);
    } else {
      session = apiKeySessions.get(sessionId);
      if (!session) return rpcError(res, 404, 'unknown session');
    }
    await session.transport.handleRequest(req, res, body);
  }

  function pruneJtis(): void {
    const now = Math.floor(Date.now() / 1000);
    for (const [jti, exp] of usedJtis) if (exp + 300 < now) usedJtis.delete(jti);
  }

  return {
    url,
    metadataUrl,
    apiKeyUrl,
    apiKey,
    seen: () => seen.map((s) => ({ ...s })),
    calls: () => calls.map((c) => ({ ...c })),
    cancelled: () => cancellations.map((c) => ({ ...c })),
    apiKeyRequests: () => apiKeyRequests,
    addTool(name) {
      extraTools.push(name);
      for (const session of identitySessions.values()) registerEchoTool(session.server, name);
    },
    async stop() {
      for (const sessions of [identitySessions, apiKeySessions]) {
        await Promise.allSettled([...sessions.values()].map((s) => s.server.close()));
        sessions.clear();
      }
      await Promise.all([close(identityHttp), close(apiKeyHttp)]);
    },
  };
}

function newSession(sessions: Map<string, Session>, register: (server: McpServer) => void): Session {
  const server = new McpServer({ name: 'countersign-lab-upstream', version: '0.1.0' });
  register(server);
  const session: Session = { server, calls: 0 } as Session;
  session.transport = new StreamableHTTPServerTransport({
    sessionIdGenerator: () => randomUUID(),
    onsessioninitialized: (id) => {
      sessions.set(id, session);
    },
    onsessionclosed: (id) => {
      sessions.delete(id);
    },
  });
  void server.connect(session.transport);
  return session;
}

function fail(res: ServerResponse, error: unknown): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  if (error instanceof Refusal) {
    res.setHeader('www-authenticate', error.challenge);
    return json(res, error.status, { error: error.message });
  }
  if (error instanceof BadBody) return rpcError(res, 400, 'parse error', -32700);
  json(res, 500, { error: 'internal' });
}

class BadBody extends Error {}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY) throw new BadBody('too large');
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new BadBody('not JSON');
  }
}

function isRequest(message: unknown, method: string): message is { method: string; params?: unknown } {
  return typeof message === 'object' && message !== null && (message as { method?: unknown }).method === method;
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

function rpcError(res: ServerResponse, status: number, message: string, code = -32600): void {
  json(res, status, { jsonrpc: '2.0', error: { code, message }, id: null });
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

function close(server: Server): Promise<void> {
  server.closeAllConnections();
  return new Promise((resolve) => server.close(() => resolve()));
}
