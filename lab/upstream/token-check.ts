import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { calculateJwkThumbprint, createRemoteJWKSet, decodeProtectedHeader, EmbeddedJWK, jwtVerify } from 'jose';
import type { JWTPayload } from 'jose';

/** Claims the upstream relies on once a token is accepted. */
export interface AcceptedToken {
  jti: string;
  sub: string;
  aud: string | string[];
  act?: { sub?: string } & Record<string, unknown>;
  acr?: string;
  exp: number;
  authorizationDetails: Record<string, unknown>[];
  dpopBound: boolean;
}

/** A refusal: the HTTP status and the `WWW-Authenticate` challenge the upstream answers with. */
export class Refusal extends Error {
  readonly status: number;
  readonly challenge: string;

  constructor(status: number, challenge: string, message: string) {
    super(message);
    this.status = status;
    this.challenge = challenge;
  }
}

const PROOF_MAX_AGE_S = 60;

/**
 * Checks `Authorization` (and `DPoP`) on one request the way a resource server must (RFC 6750 §3,
 * RFC 9449 §7, MCP authorization: the audience must be this server, no token passthrough).
 */
export class TokenChecker {
  readonly #issuer: string;
  readonly #resource: string;
  readonly #metadataUrl: string;
  readonly #jwks: ReturnType<typeof createRemoteJWKSet>;
  readonly #proofJtis = new Map<string, number>();

  constructor(options: { issuer: string; jwksUri: string; resource: string; metadataUrl: string }) {
    this.#issuer = options.issuer;
    this.#resource = options.resource;
    this.#metadataUrl = options.metadataUrl;
    this.#jwks = createRemoteJWKSet(new URL(options.jwksUri), { cooldownDuration: 0 });
  }

  /** `Bearer resource_metadata="…"` plus any error parameters (RFC 9728 §5.1, RFC 6750 §3). */
  challenge(scheme: 'Bearer' | 'DPoP', params: Record<string, string> = {}): string {
    const all = { ...params, resource_metadata: this.#metadataUrl };
    const body = Object.entries(all)
      .map(([k, v]) => `${k}="${v.replace(/["\\]/g, '')}"`)
      .join(', ');
    return `${scheme} ${body}`;
  }

  invalid(description: string, scheme: 'Bearer' | 'DPoP' = 'Bearer', error = 'invalid_token'): Refusal {
    return new Refusal(401, this.challenge(scheme, { error, error_description: description }), description);
  }

  async check(req: IncomingMessage): Promise<AcceptedToken> {
    const header = req.headers.authorization;
    if (!header) throw new Refusal(401, this.challenge('Bearer'), 'no access token');
    const match = /^(Bearer|DPoP) ([A-Za-z0-9\-._~+/]+=*)$/.exec(header);
    if (!match) throw this.invalid('malformed Authorization header', 'Bearer', 'invalid_request');
    const scheme = match[1] as 'Bearer' | 'DPoP';
    const token = match[2] as string;

    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.#jwks, { issuer: this.#issuer, audience: this.#resource }));
    } catch {
      throw this.invalid('the token is not valid for this resource', scheme);
    }
    const { jti, sub } = payload;
    if (typeof jti !== 'string' || typeof sub !== 'string' || typeof payload.exp !== 'number') {
      throw this.invalid('the token lacks jti, sub or exp', scheme);
    }
    const cnf = payload.cnf as { jkt?: unknown } | undefined;
    const jkt = typeof cnf?.jkt === 'string' ? cnf.jkt : undefined;
    if (jkt !== undefined) await this.#checkProof(req, token, jkt, scheme);
    else if (scheme === 'DPoP') throw this.invalid('the DPoP scheme needs a DPoP-bound token', 'DPoP');

    const details = Array.isArray(payload.authorization_details)
      ? (payload.authorization_details.filter((d) => typeof d === 'object' && d !== null) as Record<string, unknown>[])
      : [];
    return {
      jti,
      sub,
      aud: payload.aud as string | string[],
      act: payload.act as AcceptedToken['act'],
      acr: typeof payload.acr === 'string' ? payload.acr : undefined,
      exp: payload.exp,
      authorizationDetails: details,
      dpopBound: jkt !== undefined,
    };
  }

  /** RFC 9449 §4.3 and §7.1: one fresh proof per request, signed by the key the token is bound to. */
  async #checkProof(req: IncomingMessage, token: string, jkt: string, scheme: 'Bearer' | 'DPoP'): Promise<void> {
    const refuse = (why: string) => this.invalid(why, 'DPoP', 'invalid_dpop_proof');
    if (scheme !== 'DPoP') throw this.invalid('a DPoP-bound token must be presented with the DPoP scheme', 'DPoP');
    const proof = req.headers.dpop;
    if (typeof proof !== 'string' || proof.length === 0) throw refuse('a DPoP proof is required');
    let claims: JWTPayload;
    let jwk: Parameters<typeof calculateJwkThumbprint>[0];
    try {
      const header = decodeProtectedHeader(proof);
      if (header.typ !== 'dpop+jwt' || !header.jwk) throw new Error('header');
      jwk = header.jwk;
      ({ payload: claims } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt' }));
    } catch {
      throw refuse('the DPoP proof is not a valid signed proof');
    }
    if ((await calculateJwkThumbprint(jwk)) !== jkt) throw refuse('the DPoP proof is signed by another key');
    if (claims.htm !== req.method) throw refuse('htm does not match');
    const htu = new URL(this.#resource);
    const target = typeof claims.htu === 'string' ? URL.parse(claims.htu) : null;
    if (!target || `${target.origin}${target.pathname}` !== `${htu.origin}${htu.pathname}`) throw refuse('htu does not match');
    const now = Math.floor(Date.now() / 1000);
    if (typeof claims.iat !== 'number' || Math.abs(now - claims.iat) > PROOF_MAX_AGE_S) throw refuse('iat out of range');
    const ath = createHash('sha256').update(token).digest('base64url');
    if (claims.ath !== ath) throw refuse('ath does not match the token');
    if (typeof claims.jti !== 'string') throw refuse('the proof has no jti');
    this.#pruneProofs(now);
    if (this.#proofJtis.has(claims.jti)) throw refuse('the DPoP proof was replayed');
    this.#proofJtis.set(claims.jti, now);
  }

  #pruneProofs(now: number): void {
    for (const [jti, at] of this.#proofJtis) if (now - at > 2 * PROOF_MAX_AGE_S) this.#proofJtis.delete(jti);
  }
}
