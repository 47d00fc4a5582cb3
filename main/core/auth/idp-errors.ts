import * as oidc from 'openid-client';
import { AppError } from '../../../common/errors.ts';
import type { ErrorCode } from '../../../common/errors.ts';

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

/** oauth4webapi's error codes (stable, documented constants; openid-client does not re-export them). */
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

function codeOf(value: unknown): string | undefined {
  const c = (value as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

function networkFailure(value: unknown): boolean {
  // fetch() rejects with a TypeError whose cause carries the socket error's code (ECONNREFUSED…).
  for (let v: unknown = value, i = 0; v && i < 4; v = (v as { cause?: unknown }).cause, i++) {
    const c = codeOf(v);
    if (c && /^(E[A-Z]+|UND_ERR_[A-Z_]+)$/.test(c)) return true;
  }
  return false;
}

/**
 * Converts what openid-client and fetch throw into an AppError, by type and code, never by message
 * text, and without copying a foreign message (it may quote a response that carries a token).
 * `rejected` is the code for an OAuth error answer from the IdP in this context (SIGN_IN_FAILED,
 * REFRESH_FAILED…).
 */
export function idpError(error: unknown, rejected: ErrorCode, what: string): AppError {
  if (error instanceof AppError) return error;
  const names = new Set<unknown>();
  for (let v: unknown = error, i = 0; v && i < 4; v = (v as { cause?: unknown }).cause, i++) names.add((v as { name?: unknown }).name);
  if (names.has('TimeoutError')) return new AppError('IDP_UNAVAILABLE', `Your identity provider did not answer in time (${what}).`, { cause: error });
  const name = (error as { name?: unknown } | null)?.name;
  if (name === 'AbortError') return new AppError('CANCELLED', `${what} was cancelled.`, { cause: error });
  if (error instanceof oidc.ResponseBodyError) {
    if (error.status >= 500) return new AppError('IDP_UNAVAILABLE', `Your identity provider is unavailable (${what}: HTTP ${error.status}).`, { cause: error });
    return new AppError(rejected, `Your identity provider refused ${what} (${safeOAuthCode(error.error)}).`, { cause: error });
  }
  if (error instanceof oidc.AuthorizationResponseError) {
    const code = safeOAuthCode(error.error);
    return new AppError(code === 'access_denied' ? 'IDP_DENIED' : rejected, `Your identity provider refused ${what} (${code}).`, { cause: error });
  }
  const code = codeOf(error);
  if (code === 'OAUTH_JWT_CLAIM_COMPARISON_FAILED') {
    let claim = 'unknown_error';
    for (let v: unknown = error, i = 0; v && i < 4 && claim === 'unknown_error'; v = (v as { cause?: unknown }).cause, i++) {
      claim = safeOAuthCode((v as { claim?: unknown }).claim);
    }
    return new AppError('IDP_BAD_RESPONSE', `The ID token from your identity provider failed validation: its ${claim} claim is not what was expected.`, { cause: error });
  }
  if (code === 'OAUTH_RESPONSE_IS_NOT_JSON' || code === 'OAUTH_PARSE_ERROR') {
    return new AppError('IDP_BAD_RESPONSE', `Your identity provider answered ${what} with something that is not a valid response.`, { cause: error });
  }
  if (code && BAD_RESPONSE_CODES.has(code)) {
    return new AppError('IDP_BAD_RESPONSE', `Your identity provider's answer to ${what} failed validation.`, { cause: error });
  }
  if (error instanceof oidc.ClientError && (error as { code?: string }).code === 'OAUTH_HTTP_REQUEST_FORBIDDEN') {
    return new AppError('CONFIG_INVALID', 'The identity provider must be reached over https.', { cause: error });
  }
  if (networkFailure(error)) return new AppError('IDP_UNAVAILABLE', `Your identity provider could not be reached (${what}).`, { cause: error });
  return new AppError(rejected, `${what} failed.`, { cause: error });
}
