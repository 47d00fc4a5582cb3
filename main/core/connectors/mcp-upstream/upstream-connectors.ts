/**
 * Builds the configured remote MCP upstreams as connectors for the broker. Their listing credentials
 * come from the core's credential source (main/core/broker/credentials.ts), built before both.
 */
import type { TokenSource } from '../../ports.ts';
import type { Connector } from '../types.ts';
import type { CredentialBroker } from './connector.ts';
import { McpUpstreamConnector } from './connector.ts';
import type { UpstreamConfigInput } from './config.ts';
import { fileListingCache } from './listing-cache.ts';
import { AppError } from '../../../../common/errors.ts';

/** What an upstream needs to list its tools: `Credentials.withCredential` (main/core/broker/credentials.ts). */
export interface CredentialHost {
  withCredential: CredentialBroker;
}

export interface UpstreamConnectorDeps {
  credentials: CredentialHost;
  /** Supplies the install's DPoP key (RFC 9449) when the IdP binds tokens to it. */
  tokens: Pick<TokenSource, 'dpopKeyPair'>;
  /** Where each upstream's last listing is kept (listing-cache.ts); without it nothing is kept. */
  listingsDir?: string;
  log?: (line: string) => void;
}

/**
 * One connector per configured upstream, lazy: no request leaves until the broker first lists tools.
 * Names must be unique (they are the tools' namespace); a duplicate is a configuration error.
 */
export function createUpstreamConnectors(configs: readonly UpstreamConfigInput[], deps: UpstreamConnectorDeps): Connector[] {
  const withCredential: CredentialBroker = (plan, use, signal) => deps.credentials.withCredential(plan, use, signal);
  const seen = new Set<string>();
  const listings = deps.listingsDir !== undefined ? fileListingCache(deps.listingsDir) : undefined;
  return configs.map((config) => {
    if (seen.has(config.name)) throw new AppError('CONFIG_INVALID', `Two upstreams are named ${config.name}; each needs its own name.`);
    seen.add(config.name);
    return new McpUpstreamConnector(config, {
      withCredential,
      dpopKeyPair: () => deps.tokens.dpopKeyPair(),
      ...(listings ? { listings } : {}),
      ...(deps.log ? { log: deps.log } : {}),
    });
  });
}
