import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, SignJWT } from 'jose';
import type { JWK } from 'jose';
import type { LabIdp } from '../../lab/idp/index.ts';

/** Shared pieces of the IdP tests: PKCE, DPoP proofs, client assertions and an HTTP-driven sign-in. */

export const TE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const AT_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
export const SIGN_IN_SCOPE = 'openid profile email offline_access';
export const APP_RESOURCE = 'urn:countersign:app';

export function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

export interface DpopKey {
  publicJwk: JWK;
  thumbprint: string;
  proof(htm: string, htu: string, accessToken?: string): Promise<string>;
}

export async function dpopKey(): Promise<DpopKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const publicJwk = await exportJWK(publicKey);
  return {
    publicJwk,
    thumbprint: await calculateJwkThumbprint(publicJwk),
    async proof(htm, htu, accessToken) {
      return new SignJWT({
        htm,
        htu,
        jti: randomUUID(),
        ...(accessToken ? { ath: createHash('sha256').update(accessToken).digest('base64url') } : {}),
      })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: publicJwk })
        .setIssuedAt()
        .sign(privateKey);
    },
  };
}

/** A key pair for a private_key_jwt client (RFC 7523 §2.2 client assertions). */
export async function clientKey(): Promise<{ jwks: { keys: JWK[] }; assertion(clientId: string, aud: string): Promise<string> }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const kid = randomUUID();
  const pub = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
  return {
    jwks: { keys: [pub] },
    assertion: (clientId, aud) =>
      new SignJWT({ jti: randomUUID() })
        .setProtectedHeader({ alg: 'ES256', kid })
        .setIssuer(clientId)
        .setSubject(clientId)
        .setAudience(aud)
        .setIssuedAt()
        .setExpirationTime('60s')
        .sign(privateKey),
  };
}

export interface TokenResponse {
  access_token: string;
  token_type: string;
  expires_in: number;
  refresh_token?: string;
  id_token?: string;
  scope?: string;
  [k: string]: unknown;
}

export async function postForm(url: string, form: Record<string, string | undefined>, headers: Record<string, string> = {}) {
  const body = new URLSearchParams(Object.entries(form).filter((e): e is [string, string] => e[1] !== undefined));
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {
    /* not JSON: the caller asserts on status */
  }
  return { status: res.status, json, headers: res.headers };
}

/** Follows redirects by hand with a cookie jar, so each hop of the front channel is a real request. */
export class CookieClient {
  #jar = new Map<string, string>();

  async request(url: string, init: { method?: string; form?: URLSearchParams } = {}): Promise<Response> {
    const headers: Record<string, string> = {};
    if (this.#jar.size) headers.cookie = [...this.#jar].map(([k, v]) => `${k}=${v}`).join('; ');
    if (init.form) headers['content-type'] = 'application/x-www-form-urlencoded';
    const res = await fetch(url, { method: init.method ?? 'GET', headers, body: init.form, redirect: 'manual' });
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair!.indexOf('=');
      const name = pair!.slice(0, i);
      const value = pair!.slice(i + 1);
      if (/expires=Thu, 01 Jan 1970/i.test(c) || value === '') this.#jar.delete(name);
      else this.#jar.set(name, value);
    }
    return res;
  }
}

export interface SignInOptions {
  username: string;
  password: string;
  otp?: string;
  acrValues?: string;
  clientId?: string;
  /** Authenticates a confidential client at the token endpoint (private_key_jwt). */
  clientAssertion?: () => Promise<string>;
  dpop?: DpopKey;
  redirectPort?: number;
}

/** Drives the authorization endpoint and the lab's login form over HTTP; returns the code and verifier. */
export async function authorize(idp: LabIdp, o: SignInOptions): Promise<{ code: string; verifier: string; redirectUri: string }> {
  const { verifier, challenge } = pkce();
  const redirectUri = `http://127.0.0.1:${o.redirectPort ?? 49152 + Math.floor(Math.random() * 10000)}/callback`;
  const state = randomBytes(16).toString('base64url');
  const auth = new URL(`${idp.issuer}/auth`);
  auth.search = new URLSearchParams({
    client_id: o.clientId ?? idp.nativeClientId,
    response_type: 'code',
    redirect_uri: redirectUri,
    scope: SIGN_IN_SCOPE,
    resource: APP_RESOURCE,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    ...(o.acrValues ? { acr_values: o.acrValues } : {}),
  }).toString();
  const client = new CookieClient();
  let url = auth.href;
  for (let hop = 0; hop < 10; hop++) {
    const res = await client.request(url);
    const location = res.headers.get('location');
    if (res.status >= 300 && res.status < 400 && location) {
      const next = new URL(location, url);
      if (next.href.startsWith(redirectUri)) {
        const code = next.searchParams.get('code');
        if (!code || next.searchParams.get('state') !== state) {
          throw new Error(`authorization failed: ${next.searchParams.get('error')} ${next.searchParams.get('error_description')}`);
        }
        return { code, verifier, redirectUri };
      }
      url = next.href;
      continue;
    }
    const page = await res.text();
    const m = /action="(\/interaction\/[^"]+\/login)"/.exec(page);
    if (res.status !== 200 || !m) throw new Error(`unexpected page at ${url}: ${res.status} ${/<p>([^<]*)<\/p><\/main>/.exec(page)?.[1] ?? ''}`);
    const form = new URLSearchParams({ username: o.username, password: o.password, ...(o.otp ? { otp: o.otp } : {}) });
    const posted = await client.request(new URL(m[1]!, url).href, { method: 'POST', form });
    const loc = posted.headers.get('location');
    if (posted.status !== 303 || !loc) throw new Error(`login was not accepted (${posted.status})`);
    url = new URL(loc, url).href;
  }
  throw new Error('too many redirects');
}

export async function redeemCode(idp: LabIdp, o: SignInOptions, a: { code: string; verifier: string; redirectUri: string }) {
  const headers: Record<string, string> = o.dpop ? { dpop: await o.dpop.proof('POST', idp.tokenEndpoint) } : {};
  return postForm(
    idp.tokenEndpoint,
    {
      grant_type: 'authorization_code',
      code: a.code,
      code_verifier: a.verifier,
      redirect_uri: a.redirectUri,
      client_id: o.clientId ?? idp.nativeClientId,
      ...(o.clientAssertion
        ? {
            client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
            client_assertion: await o.clientAssertion(),
          }
        : {}),
    },
    headers,
  );
}

/** A full sign-in over HTTP: the user's tokens, as the app would hold them. */
export async function signIn(idp: LabIdp, o: SignInOptions): Promise<TokenResponse> {
  const res = await redeemCode(idp, o, await authorize(idp, o));
  if (res.status !== 200) throw new Error(`code redemption failed: ${res.status} ${String(res.json.error)}`);
  return res.json as TokenResponse;
}

export function decodeJwt(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}

export const CLINIC = 'postgres://lab/clinic';
export const readDetails = (extra: Record<string, unknown> = {}) => [
  { type: 'postgres', locations: [CLINIC], actions: ['SELECT'], identifier: 'patients', tables: ['patients'], ...extra },
];

export async function exchange(
  idp: LabIdp,
  subjectToken: string,
  o: {
    details?: unknown;
    audience?: string;
    resource?: string;
    dpop?: DpopKey;
    clientId?: string;
    clientAssertion?: () => Promise<string>;
    extra?: Record<string, string>;
  } = {},
) {
  const headers: Record<string, string> = o.dpop ? { dpop: await o.dpop.proof('POST', idp.tokenEndpoint) } : {};
  return postForm(
    idp.tokenEndpoint,
    {
      grant_type: TE,
      client_id: o.clientId ?? idp.nativeClientId,
      subject_token: subjectToken,
      subject_token_type: AT_TYPE,
      authorization_details: JSON.stringify(o.details ?? readDetails()),
      ...(o.resource ? { resource: o.resource } : { audience: o.audience ?? idp.vaultAudience }),
      ...(o.clientAssertion
        ? {
            client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
            client_assertion: await o.clientAssertion(),
          }
        : {}),
      ...o.extra,
    },
    headers,
  );
}
