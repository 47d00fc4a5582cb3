/**
 * What a call to an upstream, or the listing of its tools, asks the IdP and Vault for: the RAR
 * (`mcp_tool_call` with the digest of the exact arguments, or `api_key` for an upstream that takes a
 * static key from Vault) and the credential.
 */
import { AppError } from '../../../../common/errors.ts';
import type { AuthorizationDetail, CallPlan, CredentialPlan, Tier } from '../types.ts';
import { canonicalJson, sha256Digest } from './canonical-json.ts';
import type { UpstreamConfig } from './config.ts';
import type { UpstreamTool } from './tool-catalogue.ts';

/** The plan for calling `tool` (the listed name) with `args`: checked against its schema and tier first. */
export function planCall(config: UpstreamConfig, tool: string, entry: UpstreamTool, args: Record<string, unknown>): CallPlan {
  const local = entry.tool.name;
  const checked = entry.validate(args);
  if (!checked.valid) {
    throw new AppError('INPUT_INVALID', `The arguments for ${tool} do not match its input schema.`);
  }
  if (entry.tier === 4) throw new AppError('POLICY_BLOCKED', `Your policy blocks ${tool}.`);
  let bytes: string;
  try {
    bytes = canonicalJson(args);
  } catch (error) {
    throw new AppError('INPUT_INVALID', `The arguments for ${tool} cannot be written as JSON.`, { cause: error });
  }
  const url = config.url;
  const base = {
    connector: config.name,
    tool,
    tier: entry.tier,
    reason: `${entry.tier === 1 ? 'read-only' : entry.tier === 2 ? 'write' : 'sensitive'} call of ${local} on ${config.name}`,
    target: url,
    bytes,
    ...(entry.tier === 2 ? { approvalScope: { statementClass: 'mcp_tool_call', targets: [tool] } } : {}),
  };
  if (config.auth === 'api-key') return { ...base, ...apiKeyLeg(config) };
  const detail: AuthorizationDetail = {
    type: 'mcp_tool_call',
    locations: [url],
    actions: ['call'],
    identifier: local,
    argument_digest: sha256Digest(bytes),
  };
  return { ...base, authorizationDetails: [detail], resource: url, credential: { kind: 'obo' } };
}

/** The plan for listing the upstream's tools, which happens outside any tool call. */
export function listingPlan(config: UpstreamConfig): CallPlan {
  const base = { connector: config.name, tool: `${config.name}.*`, tier: 1 as Tier, target: config.url, bytes: '' };
  if (config.auth === 'api-key') return { ...base, reason: `listing the tools of ${config.name}`, ...apiKeyLeg(config) };
  return {
    ...base,
    reason: `listing the tools of ${config.name}`,
    authorizationDetails: [
      {
        type: 'mcp_tool_call',
        locations: [config.url],
        actions: ['list'],
        identifier: 'tools/list',
        argument_digest: sha256Digest(canonicalJson({})),
      },
    ],
    resource: config.url,
    credential: { kind: 'obo' },
  };
}

function apiKeyLeg(config: UpstreamConfig): { authorizationDetails: AuthorizationDetail[]; audience: string; credential: CredentialPlan } {
  const k = config.apiKey;
  if (!k) throw new AppError('CONFIG_INVALID', `The upstream ${config.name} has no API-key settings.`);
  return {
    authorizationDetails: [{ type: 'api_key', locations: [config.url], actions: ['read'], identifier: config.name }],
    audience: k.audience,
    credential: { kind: 'vault-kv', authMount: k.authMount, role: k.role, kvMount: k.kvMount, path: k.path, field: k.field },
  };
}
