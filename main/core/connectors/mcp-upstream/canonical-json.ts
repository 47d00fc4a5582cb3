import { createHash } from 'node:crypto';

/**
 * Canonical JSON of tool arguments (RFC 8785, common/canonical-json.ts): the bytes an approval is shown
 * and the RAR's `argument_digest` covers, so the upstream can check that the token describes exactly
 * the call it receives.
 */
export { canonicalJson } from '../../../../common/canonical-json.ts';

/** `sha256:<hex>` of the canonical JSON, the RAR `argument_digest`. */
export function sha256Digest(bytes: string): string {
  return `sha256:${createHash('sha256').update(bytes, 'utf8').digest('hex')}`;
}
