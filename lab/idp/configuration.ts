/**
 * The lab IdP's oidc-provider configuration: the native client, JWT access tokens carrying acr and
 * auth_time, DPoP, dynamic registration (keyed clients only), device flow, refresh rotation, resource
 * indicators and RFC 9396 types, and a login check that asks for the one-time code when the request wants it.
 */
import { randomBytes } from 'node:crypto';
import { errors, interactionPolicy } from 'oidc-provider';
import type { Configuration, KoaContextWithOIDC } from 'oidc-provider';
import type { LabKeys } from './keys.ts';
import { messagePage } from './pages.ts';
import { RAR_TYPES } from './policy.ts';
import { APP_RESOURCE, JWT_BEARER, STEP_UP_RESOURCE, TOKEN_EXCHANGE } from './token-exchange.ts';
import { ACR_MFA, ACR_PASSWORD, userBySub } from './users.ts';

export const NATIVE_CLIENT_ID = 'countersign-desktop';

export interface ConfigurationInputs {
  adapter: Configuration['adapter'];
  keys: LabKeys;
  cookieKey: string;
  /** The vendor decides by scopes (Keycloak, Okta): no RAR types are published. */
  byScope: boolean;
  /** The token-exchange and JWT-bearer grants are offered. */
  exchanges: boolean;
  vaultScopes: string[];
  registrationAdminToken: string | undefined;
  /** Access tokens' lifetime, read at each issue (tests shorten it). */
  accessTokenTtl: () => number;
}

export function providerConfiguration(inputs: ConfigurationInputs): Configuration {
  const { keys, cookieKey, byScope, exchanges, vaultScopes, registrationAdminToken } = inputs;
  const { Check, base } = interactionPolicy;
  const prompts = base();
  prompts.get('login')!.checks.add(
    new Check('acr_mfa_requested', 'the request asks for a one-time code and the session has none', (ctx) => {
      const asked = String(ctx.oidc.params?.acr_values ?? '').split(' ');
      return asked.includes(ACR_MFA) && ctx.oidc.session?.acr !== ACR_MFA;
    }),
  );

  const grantSourceOf = (ctx: KoaContextWithOIDC) => {
    const e = ctx.oidc.entities as Record<
      string,
      { acr?: string; amr?: string[]; authTime?: number } | undefined
    >;
    return e.AuthorizationCode ?? e.RefreshToken ?? e.DeviceCode;
  };

  return {
    adapter: inputs.adapter,
    clients: [
      {
        client_id: NATIVE_CLIENT_ID,
        client_name: 'Countersign',
        application_type: 'native',
        token_endpoint_auth_method: 'none',
        ...(byScope ? {} : { authorization_details_types: Object.keys(RAR_TYPES) }),
        require_auth_time: true,
        redirect_uris: ['http://127.0.0.1/callback'],
        response_types: ['code'],
        grant_types: [
          'authorization_code',
          'refresh_token',
          ...(exchanges ? [TOKEN_EXCHANGE] : []),
          'urn:ietf:params:oauth:grant-type:device_code',
          ...(exchanges ? [JWT_BEARER] : []),
        ],
      },
    ],
    jwks: { keys: [keys.providerJwk] },
    cookies: { keys: [cookieKey] },
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
    },
    scopes: ['openid', 'profile', 'email', 'offline_access', ...vaultScopes],
    responseTypes: ['code'],
    clientDefaults: {
      grant_types: ['authorization_code'],
      response_types: ['code'],
      id_token_signed_response_alg: 'ES256',
      token_endpoint_auth_method: 'private_key_jwt',
      ...(byScope ? {} : { authorization_details_types: Object.keys(RAR_TYPES) }),
    },
    acrValues: [ACR_PASSWORD, ACR_MFA],
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    clientAuthMethods: ['none', 'private_key_jwt'],
    enabledJWA: { clientAuthSigningAlgValues: ['ES256', 'EdDSA', 'PS256', 'RS256'] },
    async findAccount(_ctx, sub) {
      const user = userBySub(sub);
      if (!user) return undefined;
      return {
        accountId: user.sub,
        async claims() {
          return {
            sub: user.sub,
            name: user.name,
            preferred_username: user.username,
            email: user.email,
            email_verified: true,
          };
        },
      };
    },
    interactions: {
      policy: prompts,
      url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    // First-party lab clients: consent is implied (a lab, not a consent UI).
    async loadExistingGrant(ctx) {
      const { client, session } = ctx.oidc;
      if (!client || !session?.accountId) return undefined;
      const grantId = session.grantIdFor(client.clientId);
      const grant =
        (grantId && (await ctx.oidc.provider.Grant.find(grantId))) ||
        new ctx.oidc.provider.Grant({ clientId: client.clientId, accountId: session.accountId });
      grant.addOIDCScope('openid profile email offline_access');
      grant.addOIDCClaims(['sub', 'name', 'preferred_username', 'email', 'email_verified']);
      grant.addResourceScope(APP_RESOURCE, 'countersign');
      await grant.save();
      return grant;
    },
    // Refresh tokens for every client allowed the grant: the sign-in asks offline_access, but the
    // provider drops that scope unless prompt=consent, and this lab never shows a consent screen.
    async issueRefreshToken(_ctx, client) {
      return client.grantTypeAllowed('refresh_token');
    },
    rotateRefreshToken: true,
    async extraTokenClaims(ctx, token) {
      if (token.kind !== 'AccessToken') return undefined;
      const src = grantSourceOf(ctx);
      if (!src) return undefined;
      return { acr: src.acr, amr: src.amr, auth_time: src.authTime };
    },
    ttl: {
      AccessToken: () => inputs.accessTokenTtl(),
      AuthorizationCode: 60,
      DeviceCode: 600,
      IdToken: 3600,
      RefreshToken: 24 * 3600,
      Interaction: 600,
      Session: 24 * 3600,
      Grant: 24 * 3600,
    },
    features: {
      devInteractions: { enabled: false },
      revocation: { enabled: true },
      introspection: { enabled: true },
      dPoP: { enabled: true },
      deviceFlow: { enabled: true },
      registration: {
        enabled: true,
        idFactory: () => `lab-client-${randomBytes(8).toString('hex')}`,
        // Okta's registration API wants an administrator's token: a fixed one plays it.
        ...(registrationAdminToken ? { initialAccessToken: registrationAdminToken } : {}),
      },
      resourceIndicators: {
        enabled: true,
        async defaultResource(ctx, _client, oneOf) {
          const grantType = ctx.oidc.params?.grant_type;
          if (grantType === TOKEN_EXCHANGE)
            return (ctx.oidc.params?.audience as string | undefined) ?? undefined!;
          if (grantType === JWT_BEARER) return STEP_UP_RESOURCE;
          return oneOf ?? APP_RESOURCE;
        },
        useGrantedResource: () => true,
        async getResourceServerInfo(_ctx, resourceIndicator) {
          if (resourceIndicator !== APP_RESOURCE) throw new errors.InvalidTarget();
          return {
            scope: 'countersign',
            audience: APP_RESOURCE,
            accessTokenTTL: inputs.accessTokenTtl(),
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'ES256' } },
          };
        },
      },
      // Neither Keycloak nor Okta offers RFC 9396: the scope-deciding profiles publish no RAR types.
      richAuthorizationRequests: {
        enabled: !byScope,
        types: Object.fromEntries(
          Object.entries(RAR_TYPES).map(([type, schema]) => [
            type,
            {
              validate(_ctx: unknown, detail: unknown) {
                const r = schema.safeParse(detail);
                if (!r.success) {
                  const issue = r.error.issues[0];
                  throw new errors.InvalidAuthorizationDetails(
                    `authorization details of type ${type}: ${issue?.path.join('.') || 'entry'} ${issue?.message ?? 'is invalid'}`,
                  );
                }
              },
            },
          ]),
        ),
        // Authorization requests carry no RAR here: exchanges carry it, decided by the policy file.
        async authorizationDetailsForGrantSource() {
          return undefined;
        },
        async authorizationDetailsForAccessToken() {
          return undefined;
        },
        async authorizationDetailsForIntrospection() {
          return undefined;
        },
      },
    },
    extraClientMetadata: {
      properties: ['token_endpoint_auth_method'],
      // Open dynamic registration (RFC 7591), but only for clients that prove a key (private_key_jwt):
      // each install becomes its own confidential client.
      validator(ctx, key, value) {
        if (
          ctx &&
          ctx.oidc?.route === 'registration' &&
          key === 'token_endpoint_auth_method' &&
          value !== 'private_key_jwt'
        ) {
          throw new errors.InvalidClientMetadata(
            'dynamically registered clients must use token_endpoint_auth_method private_key_jwt',
          );
        }
      },
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = messagePage('Sign-in error', `${out.error}: ${out.error_description ?? ''}`);
    },
  } as Configuration;
}
