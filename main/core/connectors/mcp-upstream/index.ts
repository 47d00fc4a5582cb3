export { McpUpstreamConnector } from './connector.ts';
export type { CredentialBroker, McpUpstreamDeps } from './connector.ts';
export { UpstreamConfigSchema } from './config.ts';
export type { UpstreamConfig, UpstreamConfigInput, TierRule } from './config.ts';
export { canonicalJson, sha256Digest } from './canonical-json.ts';
export { discoverResourceMetadata, metadataUrlFor } from './metadata.ts';
export type { ResourceMetadata } from './metadata.ts';
export { tierFor, globToRegExp } from './tiers.ts';
