/**
 * IBM Security Verify's push approval, the step-up its token exchange asks for with an `mfa_challenge`
 * (IBM Verify's factors and authenticator verification APIs): list the person's factors, start a verification on their push authenticator
 * carrying the call's digest, poll the transaction until it is answered, and hand back the signed
 * assertion the exchange then presents (jwt-bearer). Every answer is parsed with a schema here.
 */
import { createHash } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { z } from 'zod';
import { canonicalJson } from '../../../common/canonical-json.ts';
import { AppError } from '../../../common/errors.ts';

/** `GET /v2.0/factors`: each factor is read on its own, so one the IdP adds in another shape is passed over. */
const FactorListSchema = z.object({ factors: z.array(z.unknown()).default([]) });
const PushFactorSchema = z.object({
  id: z.string(),
  type: z.literal('signature'),
  subType: z.string().optional(),
  attributes: z.object({ subType: z.string().optional() }).optional(),
  enabled: z.boolean().optional(),
  references: z.object({ authenticatorId: z.string() }),
});
/** `POST /v1.0/authenticators/{id}/verifications`. */
const VerificationSchema = z.object({ transactionUri: z.string() });
/** `GET <transactionUri>?returnJwt=true`; anything else reads as still pending. */
const TransactionSchema = z.object({ state: z.string().optional(), assertion: z.unknown().optional() });

const DENIED_STATES = ['USER_DENIED', 'DENY', 'FAILED'];

export interface PushApproval {
  /** The IdP's issuer: the API lives under it, and the transaction must stay on its origin. */
  issuer: string;
  /** The challenge token the exchange answered with: the bearer for these requests. */
  challenge: string;
  /** Carries the call's AbortSignal and time-out (the exchanger's fetch). */
  fetch: (url: string, init: RequestInit) => Promise<Response>;
  /** What the person approves, shown on the phone. */
  message: string;
  authorizationDetails: unknown;
  pollIntervalMs: number;
  pollTimeoutMs: number;
  signal?: AbortSignal;
  onProgress?: (message: string) => void;
}

/** `sha256:<hex>` of the authorization details as JSON with sorted keys: the call digest a push carries. */
export function authorizationDetailsDigest(details: unknown): string {
  return `sha256:${createHash('sha256').update(canonicalJson(details)).digest('hex')}`;
}

/** Sends the push and waits for the person; resolves with the assertion, or throws IDP_STEP_UP_DENIED / _TIMEOUT. */
export async function approveByPush(push: PushApproval): Promise<string> {
  const issuer = push.issuer.replace(/\/+$/, '');
  const { signal } = push;
  const api = async (url: string, init: RequestInit = {}): Promise<{ status: number; json: unknown }> => {
    let response: Response;
    try {
      response = await push.fetch(url, {
        ...init,
        headers: { Authorization: `Bearer ${push.challenge}`, Accept: 'application/json', ...(init.body ? { 'Content-Type': 'application/json' } : {}) },
      });
    } catch (error) {
      if (signal?.aborted) throw new AppError('CANCELLED', 'The call was cancelled while waiting for your approval.', { cause: error });
      throw new AppError('IDP_UNAVAILABLE', 'The identity provider could not be reached for the step-up.', { cause: error });
    }
    const json: unknown = await response.json().catch(() => undefined);
    return { status: response.status, json };
  };

  const factors = await api(`${issuer}/v2.0/factors`);
  if (factors.status !== 200) throw new AppError('IDP_BAD_RESPONSE', `The identity provider's factor list failed (HTTP ${factors.status}).`);
  const list = FactorListSchema.safeParse(factors.json ?? {}).data?.factors ?? [];
  const factor = list
    .map((f) => PushFactorSchema.safeParse(f).data)
    .find((f) => f && (f.subType === 'userPresence' || f.attributes?.subType === 'userPresence') && f.enabled !== false);
  if (!factor) throw new AppError('IDP_STEP_UP_DENIED', 'You have no push authenticator registered, so this call cannot be approved.');

  const verification = await api(`${issuer}/v1.0/authenticators/${encodeURIComponent(factor.references.authenticatorId)}/verifications`, {
    method: 'POST',
    body: JSON.stringify({
      transactionData: {
        message: push.message,
        callDigest: authorizationDetailsDigest(push.authorizationDetails),
        authorizationDetails: push.authorizationDetails,
        originUserAgent: 'Countersign',
      },
      pushNotification: { send: true, title: 'Countersign', message: push.message },
      authenticationMethods: [{ id: factor.id, methodType: 'signature' }],
      logic: 'OR',
      expiresIn: Math.ceil(push.pollTimeoutMs / 1000),
    }),
  });
  const started = VerificationSchema.safeParse(verification.json);
  if (verification.status >= 300 || !started.success) {
    throw new AppError('IDP_BAD_RESPONSE', `The identity provider did not start the push approval (HTTP ${verification.status}).`);
  }
  const pollUrl = new URL(started.data.transactionUri, `${issuer}/`);
  if (pollUrl.origin !== new URL(issuer).origin) throw new AppError('IDP_BAD_RESPONSE', 'The push transaction points outside the identity provider.');
  pollUrl.searchParams.set('returnJwt', 'true');

  push.onProgress?.('Waiting for your approval on your phone (push sent by your identity provider)…');
  const deadline = Date.now() + push.pollTimeoutMs;
  let polls = 0;
  while (Date.now() < deadline) {
    const r = await api(pollUrl.href);
    const body = r.status === 200 ? (TransactionSchema.safeParse(r.json).data ?? {}) : {};
    if (body.state === 'VERIFY_SUCCESS') {
      if (typeof body.assertion !== 'string') throw new AppError('IDP_BAD_RESPONSE', 'The approval came back without its assertion.');
      return body.assertion;
    }
    if (body.state === 'EXPIRED') throw new AppError('IDP_STEP_UP_TIMEOUT', 'The push approval expired before it was answered.');
    if (body.state && DENIED_STATES.includes(body.state)) throw new AppError('IDP_STEP_UP_DENIED', `The push approval was not given (${body.state}).`);
    polls += 1;
    if (polls % 5 === 0) push.onProgress?.(`Still waiting for your approval (${Math.round((deadline - Date.now()) / 1000)} s left)…`);
    await sleep(push.pollIntervalMs, signal);
  }
  throw new AppError('IDP_STEP_UP_TIMEOUT', 'The push approval was not answered in time.');
}

async function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  try {
    await delay(ms, undefined, { signal });
  } catch (error) {
    throw new AppError('CANCELLED', 'The call was cancelled while waiting for your approval.', { cause: error });
  }
}
