/**
 * The one place what the identity provider answers becomes an AppError: sign-in, refresh, revocation,
 * client registration, discovery, the token exchange and its step-up. By type, OAuth error code and
 * HTTP status, never by message text, and without copying a foreign message (it may quote a response
 * that carries a token): only the OAuth `error` code and its `error_description`, which RFC 6749 §5.2
 * writes for the client, made short and printable.
 */
import * as oidc from 'openid-client';
import { AppError, type ErrorCode } from '../../../common/errors.ts';

/** One step that talks to the IdP, as its errors read. */
export interface IdpStep {
  /** Names the step in messages ("the sign-in", "renewing your sign-in"). */
  what: string;
  /** The code of an OAuth error answer (4xx) at this step. */
  refused: ErrorCode;
  /** OAuth errors this step gives a meaning of their own. */
  byError?: Readonly<Record<string, ErrorCode>>;
  /** The sentence an OAuth refusal starts with, when not "Your identity provider refused <what>". */
  refusal?: string;
  /** Said after an OAuth refusal: what the person can do. */
  advice?: string;
  /** The code when nothing more precise fits (default: `refused`). */
  failed?: ErrorCode;
}

export const IDP_STEPS = {
  discovery: { what: 'discovery', refused: 'IDP_BAD_RESPONSE' },
  signIn: { what: 'the sign-in', refused: 'SIGN_IN_FAILED' },
  /** The authorization redirect (`error=` on the callback): the person or the IdP's policy said no. */
  authorization: { what: 'the sign-in', refused: 'SIGN_IN_FAILED', byError: { access_denied: 'IDP_DENIED' } },
  refresh: { what: 'renewing your sign-in', refused: 'REFRESH_FAILED' },
  revoke: { what: 'revoking your sign-in', refused: 'IDP_BAD_RESPONSE' },
  registration: {
    what: 'registering this install as a client',
    refused: 'CLIENT_REGISTRATION_FAILED',
    refusal: 'Your identity provider refused to register this install as a client',
    advice:
      'Countersign does not fall back to the shared public client: ask your administrator to allow registration, or set idp.dynamicRegistration to "off".',
  },
  exchange: { what: 'the token exchange', refused: 'IDP_DENIED', refusal: 'Your identity provider denied this call', failed: 'IDP_BAD_RESPONSE' },
  stepUp: {
    what: 'the step-up',
    refused: 'IDP_DENIED',
    byError: { access_denied: 'IDP_STEP_UP_DENIED' },
    refusal: 'Your identity provider denied this call',
    failed: 'IDP_BAD_RESPONSE',
  },
} as const satisfies Record<string, IdpStep>;

/** OAuth error codes are printable ASCII without quotes or backslashes (RFC 6749 §5.2); anything else is not repeated. */
export function safeOAuthCode(value: unknown): string {
  return typeof value === 'string' && /^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}$/.test(value) ? value : 'unknown_error';
}

/** An IdP's `error_description` is written for the client to show; keep it short and printable. */
export function safeDescription(value: unknown): string {
  if (typeof value !== 'string') return '';
  // eslint-disable-next-line no-control-regex
  return value.replace(/[\u0000-\u001f\u007f]/g, ' ').trim().slice(0, 300);
}

/** An OAuth error answer (RFC 6749 §5.2): its HTTP status, `error` and `error_description`. */
export interface OAuthAnswer {
  status: number;
  error: string;
  description: string;
}

/** The OAuth error answer in what openid-client threw, when it is one. */
export function oauthAnswer(error: unknown): OAuthAnswer | undefined {
  if (!(error instanceof oidc.ResponseBodyError)) return undefined;
  return { status: error.status, error: safeOAuthCode(error.error), description: safeDescription(error.error_description) };
}

/**
 * The same for a 401 that came as a WWW-Authenticate challenge (a registration endpoint that wants an
 * initial access token, RFC 7591 §3): its OAuth error may be in the header or only in the JSON body.
 */
export async function challengeAnswer(error: unknown): Promise<OAuthAnswer | undefined> {
  if (!(error instanceof oidc.WWWAuthenticateChallengeError)) return oauthAnswer(error);
  const body = (await error.response.json().catch(() => undefined)) as { error?: unknown; error_description?: unknown } | undefined;
  return {
    status: error.status,
    error: safeOAuthCode(error.cause[0]?.parameters.error ?? body?.error ?? `HTTP ${error.status}`),
    description: safeDescription(body?.error_description),
  };
}

/** `invalid_client` from an endpoint the client authenticated to: the IdP no longer accepts this client. */
export function isClientRejected(error: unknown): boolean {
  return oauthAnswer(error)?.error === 'invalid_client';
}

/** The IdP answered, and said no (a 4xx OAuth error), rather than failing. */
export function isRefusal(error: unknown): boolean {
  const answer = oauthAnswer(error);
  return answer !== undefined && answer.status < 500;
}

/** An OAuth refusal at `step`, from the token endpoint or the authorization redirect (`error=` in the query). */
export function refusalError(step: IdpStep, answer: Pick<OAuthAnswer, 'error'> & Partial<OAuthAnswer>, cause?: unknown): AppError {
  const code = safeOAuthCode(answer.error);
  const description = answer.description ? `: ${answer.description}` : '';
  const opening = step.refusal ?? `Your identity provider refused ${step.what}`;
  return new AppError(step.byError?.[code] ?? step.refused, `${opening} (${code})${description}.${step.advice ? ` ${step.advice}` : ''}`, { cause });
}

/** oauth4webapi's codes for an answer that is not what the protocol says (stable constants; openid-client does not re-export them). */
const BAD_RESPONSE_CODES = new Set<string>([
  'OAUTH_PARSE_ERROR',
  'OAUTH_INVALID_RESPONSE',
  'OAUTH_RESPONSE_IS_NOT_JSON',
  'OAUTH_RESPONSE_IS_NOT_CONFORM',
  'OAUTH_JWT_TIMESTAMP_CHECK_FAILED',
  'OAUTH_JWT_CLAIM_COMPARISON_FAILED',
  'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED',
  'OAUTH_KEY_SELECTION_FAILED',
  'OAUTH_MISSING_SERVER_METADATA',
  'OAUTH_INVALID_SERVER_METADATA',
  'OAUTH_JWS_SIGNATURE_VERIFICATION_FAILED',
  'OAUTH_JWT_CLAIM_MISSING',
  'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
]);

function chainOf(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = error; e !== undefined && e !== null && chain.length < 5; e = (e as { cause?: unknown }).cause) chain.push(e);
  return chain;
}

const field = (value: unknown, key: 'code' | 'name' | 'claim' | 'cause' | 'status'): unknown => (value as Record<string, unknown> | null)?.[key];

/** fetch() rejects with a TypeError of its own (no `code`), whose cause carries the socket's error code (ECONNREFUSED…). */
function unreachable(chain: unknown[]): boolean {
  return chain.some((e) => {
    const code = field(e, 'code');
    return (typeof code === 'string' && /^(E[A-Z]+|UND_ERR_[A-Z_]+)$/.test(code)) || (e instanceof TypeError && code === undefined);
  });
}

/** Converts what openid-client and fetch throw at `step` into an AppError. */
export function idpError(error: unknown, step: IdpStep): AppError {
  if (error instanceof AppError) return error;
  const chain = chainOf(error);
  const code = field(error, 'code');
  if (code === 'OAUTH_TIMEOUT' || chain.some((e) => field(e, 'name') === 'TimeoutError')) {
    return new AppError('IDP_UNAVAILABLE', `Your identity provider did not answer in time (${step.what}).`, { cause: error });
  }
  if (field(error, 'name') === 'AbortError') return new AppError('CANCELLED', `${step.what} was cancelled.`, { cause: error });
  const answer = oauthAnswer(error);
  // oauth4webapi reports a non-conforming answer with the Response as its cause: a 5xx is an outage too.
  const status = answer?.status ?? field(field(error, 'cause'), 'status');
  if (typeof status === 'number' && status >= 500) {
    return new AppError('IDP_UNAVAILABLE', `Your identity provider is unavailable (${step.what}: HTTP ${status}).`, { cause: error });
  }
  if (answer) return refusalError(step, answer, error);
  if (error instanceof oidc.AuthorizationResponseError) return refusalError(IDP_STEPS.authorization, { error: error.error }, error);
  if (code === 'OAUTH_JWT_CLAIM_COMPARISON_FAILED') {
    const claim = chain.map((e) => safeOAuthCode(field(e, 'claim'))).find((c) => c !== 'unknown_error') ?? 'unknown_error';
    return new AppError('IDP_BAD_RESPONSE', `The ID token from your identity provider failed validation: its ${claim} claim is not what was expected.`, { cause: error });
  }
  if (code === 'OAUTH_RESPONSE_IS_NOT_JSON' || code === 'OAUTH_PARSE_ERROR') {
    return new AppError('IDP_BAD_RESPONSE', `Your identity provider answered ${step.what} with something that is not a valid response.`, { cause: error });
  }
  if (typeof code === 'string' && BAD_RESPONSE_CODES.has(code)) {
    return new AppError('IDP_BAD_RESPONSE', `Your identity provider's answer to ${step.what} failed validation.`, { cause: error });
  }
  if (code === 'OAUTH_HTTP_REQUEST_FORBIDDEN') return new AppError('CONFIG_INVALID', 'The identity provider must be reached over https.', { cause: error });
  if (unreachable(chain)) return new AppError('IDP_UNAVAILABLE', `Your identity provider could not be reached (${step.what}).`, { cause: error });
  return new AppError(step.failed ?? step.refused, `${step.what} failed.`, { cause: error });
}
