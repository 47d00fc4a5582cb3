import { z } from 'zod';
import { AppError } from '../../../../common/errors.ts';

/** The fields of RFC 9728 §2 protected-resource metadata Countersign relies on. */
const MetadataSchema = z.looseObject({
  resource: z.string(),
  authorization_servers: z.array(z.string()).optional(),
  dpop_bound_access_tokens_required: z.boolean().optional(),
  authorization_details_types_supported: z.array(z.string()).optional(),
});
export type ResourceMetadata = z.infer<typeof MetadataSchema>;

/** RFC 9728 §3.1: the well-known suffix goes between the host and the resource's path. */
export function metadataUrlFor(resource: string): string {
  const url = new URL(resource);
  const path = url.pathname === '/' ? '' : url.pathname;
  return `${url.origin}/.well-known/oauth-protected-resource${path}${url.search}`;
}

const MAX_METADATA_BYTES = 64 * 1024;

/**
 * Fetches and checks an upstream's protected-resource metadata. Its `resource` must equal the configured
 * URL exactly (RFC 9728 §3.3), and, when an issuer is configured, list it among `authorization_servers`;
 * otherwise a server could have Countersign mint tokens for someone else's audience.
 */
export async function discoverResourceMetadata(
  name: string,
  resource: string,
  options: { issuer?: string; signal: AbortSignal },
): Promise<ResourceMetadata> {
  let response: Response;
  try {
    response = await fetch(metadataUrlFor(resource), { redirect: 'error', signal: options.signal, headers: { accept: 'application/json' } });
  } catch (error) {
    if (options.signal.aborted) throw AppError.from(options.signal.reason ?? error, 'CANCELLED');
    throw new AppError('UPSTREAM_UNAVAILABLE', `The upstream ${name} cannot be reached for its metadata.`, { cause: error });
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new AppError('UPSTREAM_BAD_RESPONSE', `The upstream ${name} published no protected-resource metadata (HTTP ${response.status}).`);
  }
  let parsed: ResourceMetadata;
  try {
    const text = await response.text();
    if (text.length > MAX_METADATA_BYTES) throw new Error('too large');
    parsed = MetadataSchema.parse(JSON.parse(text));
  } catch (error) {
    throw new AppError('UPSTREAM_BAD_RESPONSE', `The upstream ${name} published unreadable protected-resource metadata.`, { cause: error });
  }
  if (parsed.resource !== resource) {
    throw new AppError(
      'UPSTREAM_METADATA_MISMATCH',
      `The upstream ${name} describes itself as another resource than its configured URL; Countersign will not request tokens for it.`,
    );
  }
  if (options.issuer !== undefined && !(parsed.authorization_servers ?? []).includes(options.issuer)) {
    throw new AppError('UPSTREAM_METADATA_MISMATCH', `The upstream ${name} does not accept tokens from your identity provider.`);
  }
  return parsed;
}
