/**
 * The app's configuration for a running lab: what a user would write for their own IdP, Vault and
 * database (docs/identity-providers.md, docs/vault.md), pointed at the lab's loopback endpoints.
 */
import { fileURLToPath } from 'node:url';
import type { AppConfigInput } from '../main/core/config/config.ts';
import type { Lab } from './index.ts';

export const DEMO_POLICY_FILE = fileURLToPath(new URL('../main/core/policy/demo-clinic.policy.jsonc', import.meta.url));

export function labAppConfig(lab: Lab, overrides: Partial<AppConfigInput> = {}): AppConfigInput {
  const pg = new URL(lab.postgresUrl);
  return {
    idp: {
      issuer: lab.issuer,
      clientId: lab.idp.nativeClientId,
      resource: 'urn:countersign:app',
      // The lab offers open registration to private_key_jwt clients: each install becomes its own client.
      // Speaking as Okta it does not (an administrator's API): the native app signs in, and the
      // service app an administrator set up with this install's key makes the exchange, its OBO
      // living Okta's shortest 5 minutes.
      ...(lab.idp.exchangeClientId
        ? { dynamicRegistration: 'off' as const, exchangeClientId: lab.idp.exchangeClientId, allowLongLivedOboUpToSeconds: lab.idp.profile.oboLifetimeS! }
        : { dynamicRegistration: 'when-offered' as const }),
      allowInsecureHttpForLoopbackOnly: true,
      // The delegation profile that fits the vendor the lab IdP speaks (npm run lab -- --idp-profile).
      delegation: lab.idp.profile.delegation,
    },
    vault: { address: lab.vaultAddr, authMount: 'jwt', allowInsecureHttpForLoopbackOnly: true },
    policyFile: DEMO_POLICY_FILE,
    postgres: { host: pg.hostname, port: Number(pg.port), database: pg.pathname.slice(1) },
    // Only the policy makes an upstream tool tier 1; the upstream's own readOnlyHint never does.
    upstreams: [
      // Each upstream is named for what its tools do: office__get_weather, office__create_ticket,
      // office__approve_payment, office__generate_report; quotes__get_quote.
      // The identity-protected upstream checks each call's RAR, which a scope-deciding IdP cannot give it.
      ...(lab.idp.profile.delegation === 'rar'
        ? [
            {
              name: 'office',
              url: lab.upstreamMcpUrl,
              auth: 'obo' as const,
              issuer: lab.issuer,
              tools: [{ pattern: 'get_*', tier: 1 as const }],
              allowInsecureHttpForLoopbackOnly: true,
            },
          ]
        : []),
      {
        name: 'quotes',
        url: lab.apiKeyUpstreamUrl,
        auth: 'api-key',
        apiKey: { path: 'upstreams/apikey-demo' },
        tools: [{ pattern: 'get_*', tier: 1 }],
        allowInsecureHttpForLoopbackOnly: true,
      },
    ],
    // The lab IdP carries tier-3 approvals itself (a Verify-style push to the lab phone); the
    // scope-deciding vendors have no such push, so Countersign asks the person itself.
    approvals: { tier3: lab.idp.profile.delegation === 'rar' ? 'idp-when-offered' : 'local' },
    demo: true,
    ...overrides,
  };
}
