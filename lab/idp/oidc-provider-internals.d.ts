// oidc-provider 9.13.3 (pinned) ships its DPoP proof validation as an internal module; the token
// exchange and jwt-bearer grants reuse it so their proofs are checked exactly as the built-in grants'.
declare module 'oidc-provider/lib/helpers/validate_dpop.js' {
  export interface DPoPResult {
    thumbprint: string;
    jti: string;
    iat: number;
  }
  export default function validateDpop(provider: unknown, ctx: unknown, accessToken?: string): Promise<DPoPResult | undefined>;
  export function checkDpopReplay(provider: unknown, ctx: unknown, dPoP: DPoPResult, clientId: string, ErrorClass?: unknown): Promise<void>;
}
