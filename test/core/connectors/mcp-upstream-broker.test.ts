/**
 * An API-key upstream end to end through the broker: the lab IdP exchanges, the Vault stand-in (JWT
 * auth, KV v2) hands the key out per call, the lab upstream checks it; the key appears in no log line,
 * audit record or answer.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { startIdp } from '../../../lab/idp/index.ts';
import type { LabIdp } from '../../../lab/idp/index.ts';
import { startUpstream } from '../../../lab/upstream/index.ts';
import type { Upstream } from '../../../lab/upstream/index.ts';
import { startVault } from '../../../lab/vault/index.ts';
import type { LabVault } from '../../../lab/vault/index.ts';
import { createBroker } from '../../../main/core/broker/index.ts';
import type { Broker } from '../../../main/core/broker/index.ts';
import { McpUpstreamConnector } from '../../../main/core/connectors/mcp-upstream/index.ts';
import type { CredentialBroker } from '../../../main/core/connectors/mcp-upstream/index.ts';
import { createTokenExchanger } from '../../../main/core/idp/token-exchange.ts';
import { createVaultClient } from '../../../main/core/vault/client.ts';
import type { VaultClient } from '../../../main/core/vault/client.ts';
import { findSecret, labTokenSource, MemoryAudit } from '../broker/fixtures.ts';

let idp: LabIdp;
let vault: LabVault;
let upstream: Upstream;
let vaultClient: VaultClient;
let broker: Broker;
let connector: McpUpstreamConnector;
const audit = new MemoryAudit();
const logs: string[] = [];
let accessToken = '';

async function vaultWrite(path: string, body: unknown): Promise<void> {
  const res = await fetch(`${vault.addr}/v1/${path}`, {
    method: 'POST',
    headers: { 'x-vault-token': vault.rootToken, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (res.status >= 300) throw new Error(`vault ${path}: ${res.status} ${await res.text()}`);
}

beforeAll(async () => {
  idp = await startIdp();
  vault = await startVault();
  upstream = await startUpstream({ issuer: idp.issuer, jwksUri: idp.jwksUri });
  await vaultWrite('sys/auth/jwt', { type: 'jwt' });
  await vaultWrite('auth/jwt/config', { jwks_url: idp.jwksUri, bound_issuer: idp.issuer });
  await vaultWrite('sys/mounts/secret', { type: 'kv', options: { version: '2' } });
  await vaultWrite('sys/policies/acl/upstream-apikey', { policy: 'path "secret/data/upstreams/apikey-demo" { capabilities = ["read"] }' });
  await vaultWrite('auth/jwt/role/upstream-apikey', {
    role_type: 'jwt',
    bound_audiences: ['countersign-vault'],
    bound_claims: { vault_role: 'upstream-apikey' },
    user_claim: 'sub',
    token_ttl: 60,
    token_policies: ['upstream-apikey'],
  });
  await vaultWrite('secret/data/upstreams/apikey-demo', { data: { api_key: upstream.apiKey } });

  const tokens = await labTokenSource(idp, 'alice');
  accessToken = tokens.accessToken;
  const exchanger = createTokenExchanger({ issuer: idp.issuer, clientId: idp.nativeClientId, allowInsecureHttpForLoopbackOnly: true });
  vaultClient = createVaultClient({ address: vault.addr });

  /** Listing outside a call: the same exchange, Vault login and KV read, with revoke-self afterwards. */
  const withCredential: CredentialBroker = async (plan, use, signal) => {
    const obo = await exchanger.exchange({
      subjectToken: await tokens.getAccessToken(signal),
      authorizationDetails: plan.authorizationDetails,
      ...(plan.audience ? { audience: plan.audience } : {}),
      signal,
    });
    if (plan.credential.kind !== 'vault-kv') throw new Error('this test configures an API-key upstream only');
    const login = await vaultClient.loginJwt(plan.credential.authMount, plan.credential.role, obo.token, signal);
    try {
      const secret = await vaultClient.kvRead(login.token, plan.credential.kvMount, plan.credential.path, signal);
      return await use({ obo: obo.token, credential: { kind: 'api-key', apiKey: String(secret.data[plan.credential.field]) } });
    } finally {
      await vaultClient.revokeSelf(login.token);
    }
  };
  connector = new McpUpstreamConnector(
    { name: 'quotes', url: upstream.apiKeyUrl, auth: 'api-key', apiKey: { path: 'upstreams/apikey-demo' }, allowInsecureHttpForLoopbackOnly: true },
    { withCredential, dpopKeyPair: () => undefined },
  );
  broker = createBroker({ connectors: [connector], tokens, idp: exchanger, vault: vaultClient, audit, log: (line) => logs.push(line), demo: true });
});

afterAll(async () => {
  await broker?.close();
  await connector?.close();
  await vaultClient?.close();
  await upstream?.stop();
  await vault?.stop();
  await idp?.stop();
});

it('calls an API-key upstream with the key read from Vault for this call, and the key appears nowhere', async () => {
  const tools = await broker.listTools();
  expect(tools.map((t) => t.name)).toContain('quotes.get_quote');
  const before = upstream.apiKeyRequests();
  const result = await broker.callTool({
    name: 'quotes.get_quote',
    args: { symbol: 'ACME' },
    requestId: 7,
    sessionId: 'test-session',
    client: { name: 'test' },
    signal: AbortSignal.timeout(20_000),
    progress: () => {},
  });
  expect(result.isError).toBeFalsy();
  expect(JSON.stringify(result.content)).toContain('ACME: 123.45');
  expect(upstream.apiKeyRequests()).toBeGreaterThan(before);
  const record = audit.records.find((r) => r.kind === 'tool_call' && r.tool === 'quotes.get_quote');
  expect(record?.outcome).toBe('success');
  expect(record?.authorization_details).toEqual([{ type: 'api_key', locations: [upstream.apiKeyUrl], actions: ['read'], identifier: 'quotes' }]);
  const everything = JSON.stringify({ records: audit.records, logs, result });
  expect(findSecret(everything, { apiKey: upstream.apiKey, accessToken })).toEqual([]);
  expect(vault.leases()).toBe(0);
});

it('answers isError with a readable reason when the upstream is down, and records it', async () => {
  await upstream.stop();
  const result = await broker.callTool({
    name: 'quotes.get_quote',
    args: { symbol: 'ACME' },
    requestId: 8,
    sessionId: 'test-session',
    client: { name: 'test' },
    signal: AbortSignal.timeout(20_000),
    progress: () => {},
  });
  expect(result.isError).toBe(true);
  expect(JSON.stringify(result.content)).toContain('cannot be reached');
  const record = audit.records.filter((r) => r.kind === 'tool_call').at(-1);
  expect(record?.error?.code).toBe('UPSTREAM_UNAVAILABLE');
});
