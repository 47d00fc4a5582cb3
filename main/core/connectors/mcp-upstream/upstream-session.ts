/**
 * One authenticated MCP client connection to an upstream. Every HTTP request gets the credential
 * (`Authorization: Bearer|DPoP` with a fresh RFC 9449 proof, or the API-key header), never follows a
 * redirect, and its outcome is noted so failures are classified from status codes and challenge
 * parameters, never from message text.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { webcrypto } from 'node:crypto';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpError, ErrorCode as RpcCode } from '@modelcontextprotocol/sdk/types.js';
import { calculateJwkThumbprint, decodeJwt, exportJWK, SignJWT } from 'jose';
import type { JWK } from 'jose';
import { AppError } from '../../../../common/errors.ts';
import { MAX_MESSAGE_BYTES } from '../../../../common/handshake.ts';

type CryptoKeyPair = webcrypto.CryptoKeyPair;

export type UpstreamAccess =
  | { kind: 'bearer'; token: string }
  | { kind: 'dpop'; token: string; key: CryptoKeyPair; publicJwk: JWK; alg: string }
  | { kind: 'api-key'; header: string; value: string };

/** What the connection saw on the wire, for classifying a failure. */
export interface WireNotes {
  status?: number;
  challenge?: Challenge;
  network?: boolean;
  requestId?: string;
  /** An answer passed MAX_UPSTREAM_ANSWER_BYTES and was cut off unread. */
  tooLarge?: boolean;
}

/**
 * The most an upstream may send in answer to one request: what the bridge carries in one message.
 * A larger answer could not reach Claude, and read in full it would hold the core's memory.
 */
const MAX_UPSTREAM_ANSWER_BYTES = MAX_MESSAGE_BYTES;

export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

const ALGS: Record<string, string> = { 'P-256': 'ES256', 'P-384': 'ES384', Ed25519: 'EdDSA' };

/** Chooses Bearer or DPoP for an OBO: DPoP exactly when the token is bound (`cnf.jkt`), with the bound key. */
export async function oboAccess(obo: string, key: CryptoKeyPair | undefined): Promise<UpstreamAccess> {
  let jkt: unknown;
  try {
    jkt = (decodeJwt(obo).cnf as { jkt?: unknown } | undefined)?.jkt;
  } catch (error) {
    throw new AppError('OBO_INVALID', 'The on-behalf-of token is not a JWT.', { cause: error });
  }
  if (jkt === undefined) return { kind: 'bearer', token: obo };
  if (!key) throw new AppError('OBO_INVALID', 'The on-behalf-of token is DPoP-bound but this install has no DPoP key.');
  const publicJwk = await exportJWK(key.publicKey);
  if ((await calculateJwkThumbprint(publicJwk)) !== jkt) {
    throw new AppError('OBO_INVALID', 'The on-behalf-of token is bound to another DPoP key.');
  }
  const algorithm = key.privateKey.algorithm as { name: string; namedCurve?: string };
  const alg =
    algorithm.name === 'Ed25519' ? 'EdDSA' : algorithm.name === 'ECDSA' ? ALGS[algorithm.namedCurve ?? ''] : algorithm.name === 'RSASSA-PKCS1-v1_5' ? 'RS256' : undefined;
  if (!alg) throw new AppError('INTERNAL', 'The DPoP key uses an algorithm Countersign cannot sign proofs with.');
  return { kind: 'dpop', token: obo, key, publicJwk, alg };
}

/** An RFC 9449 §4.2 proof for one request to a resource: jti, htm, htu (no query or fragment), iat, ath. */
async function dpopProof(access: Extract<UpstreamAccess, { kind: 'dpop' }>, method: string, url: string): Promise<string> {
  const target = new URL(url);
  return new SignJWT({
    jti: randomUUID(),
    htm: method,
    htu: `${target.origin}${target.pathname}`,
    iat: Math.floor(Date.now() / 1000),
    ath: createHash('sha256').update(access.token).digest('base64url'),
  })
    .setProtectedHeader({ alg: access.alg, typ: 'dpop+jwt', jwk: access.publicJwk })
    .sign(access.key.privateKey);
}

/** Parses the first challenge of a `WWW-Authenticate` header (RFC 9110 §11.6.1). */
export function parseChallenge(header: string | null): Challenge | undefined {
  if (!header) return undefined;
  const scheme = /^\s*([A-Za-z0-9!#$%&'*+.^_`|~-]+)/.exec(header);
  if (!scheme) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]+))/g;
  for (const m of header.slice(scheme[0].length).matchAll(re)) {
    const key = (m[1] as string).toLowerCase();
    if (!(key in params)) params[key] = (m[2] ?? m[3] ?? '').replace(/\\(.)/g, '$1');
  }
  return { scheme: scheme[1] as string, params };
}

export interface UpstreamSession {
  client: Client;
  notes: WireNotes;
  /** Resolves once the upstream has answered the server-to-client stream request (GET), or after `waitMs`. */
  listening(waitMs: number): Promise<void>;
  /** Drops the credential: later requests (reconnects) go out without it and fail closed. */
  forget(): void;
  /**
   * Ends the session at the upstream (DELETE, best effort) and closes the connection. `cancelled`: a
   * call was cut short, and closing waits (a little) for the SDK's notifications/cancelled to go out.
   */
  close(options?: { terminate?: boolean; cancelled?: boolean }): Promise<void>;
}

export async function openSession(
  url: string,
  access: UpstreamAccess,
  options: { signal: AbortSignal; timeoutMs: number; notes?: WireNotes },
): Promise<UpstreamSession> {
  const notes: WireNotes = options.notes ?? {};
  let credential: UpstreamAccess | undefined = access;
  let heardGet: () => void = () => {};
  const getSent = new Promise<void>((resolve) => (heardGet = resolve));
  // The SDK sends notifications/cancelled on its own when a request is aborted, but as a request the
  // transport's close aborts: closing waits for it, so the upstream's tool is told to stop.
  let cancelSent: () => void = () => {};
  const cancelGone = new Promise<void>((resolve) => (cancelSent = resolve));

  const transport = new StreamableHTTPClientTransport(new URL(url), {
    reconnectionOptions: { maxRetries: 0, initialReconnectionDelay: 1000, maxReconnectionDelay: 1000, reconnectionDelayGrowFactor: 1 },
    fetch: async (input, init) => {
      const method = init?.method ?? 'GET';
      const headers = new Headers(init?.headers);
      if (credential?.kind === 'bearer') headers.set('authorization', `Bearer ${credential.token}`);
      else if (credential?.kind === 'dpop') {
        headers.set('authorization', `DPoP ${credential.token}`);
        headers.set('dpop', await dpopProof(credential, method, url));
      } else if (credential?.kind === 'api-key') headers.set(credential.header, credential.value);
      const cancelling = typeof init?.body === 'string' && init.body.includes('"notifications/cancelled"');
      let response: Response;
      try {
        response = await fetch(input, { ...init, headers, redirect: 'error' });
      } catch (error) {
        if (!isAbort(error)) notes.network = true;
        throw error;
      } finally {
        if (method === 'GET') heardGet();
        if (cancelling) cancelSent();
      }
      notes.requestId = response.headers.get('x-request-id') ?? notes.requestId;
      if (!response.ok && response.status !== 405) {
        notes.status = response.status;
        notes.challenge = parseChallenge(response.headers.get('www-authenticate'));
      }
      // The server-to-client stream (GET) lives as long as the session; each request's answer is bounded.
      if (method === 'GET' || !response.body) return response;
      return bounded(response, MAX_UPSTREAM_ANSWER_BYTES, () => {
        notes.tooLarge = true;
        // Ends the call at once: the client's requests reject instead of waiting for their time-out.
        void transport.close();
      });
    },
  });
  const client = new Client({ name: 'countersign', version: '0.1.0' });
  try {
    await client.connect(transport, { signal: options.signal, timeout: options.timeoutMs });
  } catch (error) {
    await client.close().catch(() => {});
    throw error;
  }
  return {
    client,
    notes,
    listening: (waitMs) => Promise.race([getSent, new Promise<void>((r) => setTimeout(r, waitMs).unref())]),
    forget: () => {
      credential = undefined;
    },
    async close({ terminate = true, cancelled = false } = {}) {
      if (cancelled) await Promise.race([cancelGone, new Promise<void>((r) => setTimeout(r, CANCEL_WAIT_MS).unref())]);
      if (terminate && credential) await transport.terminateSession().catch(() => {});
      credential = undefined;
      await client.close().catch(() => {});
    },
  };
}

/** How long closing a session whose call was cut short waits for the cancellation to reach the upstream. */
const CANCEL_WAIT_MS = 1_000;

/** `response` with a body that errors once more than `limit` bytes have come (which cancels the rest). */
function bounded(response: Response, limit: number, onPassed: () => void): Response {
  let received = 0;
  const body = response.body!.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        received += chunk.byteLength;
        if (received > limit) {
          onPassed();
          controller.error(new Error(`the answer passed ${limit} bytes`));
          return;
        }
        controller.enqueue(chunk);
      },
    }),
  );
  return new Response(body, { status: response.status, statusText: response.statusText, headers: response.headers });
}

/**
 * Turns whatever a call to an upstream threw into an AppError, from what was seen on the wire and the
 * error's type. The upstream's own texts (error descriptions, JSON-RPC messages) are not copied.
 */
export function classify(error: unknown, notes: WireNotes, upstream: string, reason: 'cancelled' | 'timeout' | undefined): AppError {
  if (error instanceof AppError) return error;
  if (notes.tooLarge)
    return new AppError('RESULT_TOO_LARGE', `The upstream ${upstream} sent an answer of more than ${MAX_UPSTREAM_ANSWER_BYTES} bytes, more than Countersign can pass to Claude; it was not read further. Ask for less.`, { cause: error });
  if (reason === 'cancelled') return new AppError('CANCELLED', 'The call was cancelled.', { cause: error });
  if (reason === 'timeout') return new AppError('TIMEOUT', `The upstream ${upstream} did not answer in time.`, { cause: error });
  const challenge = notes.challenge;
  if (notes.status === 401 && challenge?.params.error === 'insufficient_user_authentication') {
    const acrValues = challenge.params.acr_values;
    const maxAge = challenge.params.max_age !== undefined ? Number(challenge.params.max_age) : undefined;
    return new AppError('IDP_STEP_UP_REQUIRED', `The upstream ${upstream} needs a stronger sign-in for this tool.`, {
      cause: error,
      stepUp: {
        ...(acrValues ? { acrValues } : {}),
        ...(maxAge !== undefined && Number.isInteger(maxAge) && maxAge >= 0 ? { maxAge } : {}),
      },
    });
  }
  if (notes.status === 401 || notes.status === 403) {
    const code = challenge?.params.error;
    const why = code && /^[a-z_]{1,64}$/.test(code) ? ` (${code})` : '';
    return new AppError('UPSTREAM_DENIED', `The upstream ${upstream} refused the call's credential${why}.`, { cause: error });
  }
  if (notes.network) return new AppError('UPSTREAM_UNAVAILABLE', `The upstream ${upstream} cannot be reached.`, { cause: error });
  if (error instanceof McpError && error.code === RpcCode.RequestTimeout) {
    return new AppError('TIMEOUT', `The upstream ${upstream} did not answer in time.`, { cause: error });
  }
  if (error instanceof McpError) {
    return new AppError('UPSTREAM_BAD_RESPONSE', `The upstream ${upstream} answered with JSON-RPC error ${error.code}.`, { cause: error });
  }
  if (notes.status !== undefined && notes.status >= 500) {
    return new AppError('UPSTREAM_UNAVAILABLE', `The upstream ${upstream} failed (HTTP ${notes.status}).`, { cause: error });
  }
  const status = notes.status !== undefined ? ` (HTTP ${notes.status})` : '';
  return new AppError('UPSTREAM_BAD_RESPONSE', `The upstream ${upstream} gave an answer Countersign cannot read${status}.`, { cause: error });
}

function isAbort(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { name?: unknown }).name === 'AbortError';
}
