import { z } from 'zod';
import { AppError } from '../../../common/errors.ts';

export const LOOPBACK_HOSTS = new Set(['127.0.0.1', '[::1]', 'localhost']);

/**
 * The identity provider settings sign-in needs. Same field names as the `idp` section of the app's
 * configuration file, so that section can be handed over as is; the extra fields have safe defaults.
 */
export const IdpConfigSchema = z
  .object({
    /** The issuer identifier exactly as the IdP publishes it (OpenID Connect Discovery §4.3). */
    issuer: z.url({ protocol: /^https?$/, error: 'must be an absolute http(s) URL' }),
    clientId: z.string().min(1, 'must not be empty'),
    scopes: z.array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]+$/, 'must be scope tokens without spaces')).min(1).default(['openid', 'profile', 'email', 'offline_access']),
    /** RFC 8707 resource for the user's own access token. */
    resource: z.url({ error: 'must be an absolute URI' }).or(z.string().regex(/^urn:[a-z0-9][a-z0-9-]*:\S+$/i, 'must be an absolute URI')).optional(),
    /**
     * Accepted, for configurations written before, and not read: the audience a call asks for and its
     * OBO is checked against is the policy's (`postgres.audience`, an upstream's `apiKey.audience`).
     */
    vaultAudience: z.string().min(1, 'must not be empty').optional(),
    /**
     * How the identity provider decides each call (docs/identity-providers.md). `rar`: the exchange
     * carries the call's RFC 9396 authorization details and the OBO must grant them (the lab, IBM
     * Verify where the tenant returns them). `scopes`: the exchange asks one scope per credential
     * (`vault:clinic-read`) and the IdP decides at that level (Keycloak 26.2+, Okta); the RAR is still
     * shown and recorded. Never inferred: an OBO that does not fit the configured profile is refused.
     */
    delegation: z.enum(['rar', 'scopes']).default('rar'),
    /** Under `scopes`: the scope asked for a credential is this prefix and the Vault role (`vault:` + `clinic-read`). */
    delegationScopePrefix: z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]*$/, 'must be scope characters without spaces').default('vault:'),
    /**
     * The administrator-created confidential client that makes the token exchange, where the IdP lets
     * only such a client exchange a token the sign-in client got (Okta's service app). It
     * authenticates with private_key_jwt using this install's exchange key, kept in the keychain
     * (main/core/idp/exchange-client.ts); `countersign doctor` shows the public half to add to it.
     * Absent: the exchange authenticates as the sign-in client.
     */
    exchangeClientId: z.string().min(1, 'must not be empty').optional(),
    /**
     * Accept OBOs living longer than 60 s, up to this many seconds, from an IdP that cannot issue
     * shorter ones (Okta: 5 minutes at least). Weaker: Vault keeps no record of used jtis, so a leaked
     * OBO can log in there until it expires. Off by default; logged at start.
     */
    allowLongLivedOboUpToSeconds: z.number().int().min(61).max(300).optional(),
    /** Plain http to an IdP on 127.0.0.1 (the lab). Insecure; off by default; logged at start. */
    allowInsecureHttpForLoopbackOnly: z.boolean().default(false),
    /**
     * RFC 7591: register a per-install confidential client (private_key_jwt) when the IdP has a
     * registration endpoint. Off by default: the token exchange must then use the same client.
     */
    dynamicRegistration: z.enum(['off', 'when-offered']).default('off'),
    /** RFC 9449: bind tokens to a per-install key when the IdP advertises DPoP. */
    dpop: z.enum(['off', 'when-offered']).default('when-offered'),
    /** How long a browser sign-in may take before it is abandoned. */
    signInTimeoutSeconds: z.number().int().positive().max(3600).default(300),
    /** Time-out of each request to the IdP. */
    requestTimeoutSeconds: z.number().positive().max(120).default(15),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (!URL.canParse(c.issuer)) return; // already an issue of idp.issuer
    const url = new URL(c.issuer);
    if (url.protocol === 'http:') {
      if (!c.allowInsecureHttpForLoopbackOnly) {
        ctx.addIssue({ code: 'custom', path: ['issuer'], message: 'must use https (plain http is allowed only for a loopback IdP with allowInsecureHttpForLoopbackOnly)' });
      } else if (!LOOPBACK_HOSTS.has(url.hostname)) {
        ctx.addIssue({ code: 'custom', path: ['issuer'], message: 'may use plain http only on a loopback address (127.0.0.1 or [::1])' });
      }
    }
    if (url.search || url.hash) ctx.addIssue({ code: 'custom', path: ['issuer'], message: 'must not carry a query or fragment' });
    if (!c.scopes.includes('openid')) ctx.addIssue({ code: 'custom', path: ['scopes'], message: 'must include openid' });
  });

export type IdpConfig = z.output<typeof IdpConfigSchema>;
export type IdpConfigInput = z.input<typeof IdpConfigSchema>;

/** Parses IdP settings; a bad field becomes CONFIG_INVALID naming the field and what is wrong with it. */
export function parseIdpConfig(input: unknown): IdpConfig {
  const r = IdpConfigSchema.safeParse(input);
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => `idp.${i.path.join('.') || '(root)'} ${i.message}`);
  throw new AppError('CONFIG_INVALID', `The identity provider settings are invalid: ${issues.join('; ')}.`);
}
