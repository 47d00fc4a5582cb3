/**
 * One error type for every edge of Countersign. Each external edge (IdP, Vault, database, upstream
 * MCP, keychain, socket) converts what it receives into an AppError in one place; across IPC, the
 * socket and MCP only `{code, message}` travels. Messages are written for the person reading them in
 * Claude or the app, and never carry a token, secret, verifier or password.
 */
export const ERROR_CODES = [
  // configuration and input
  'CONFIG_INVALID',
  'CONFIG_MISSING',
  'DATA_DIR_UNSAFE',
  'INPUT_INVALID',
  'TOOL_UNKNOWN',
  'POLICY_INVALID',
  // sign-in and the identity provider
  'NOT_SIGNED_IN',
  'SIGN_IN_CANCELLED',
  'SIGN_IN_TIMEOUT',
  'SIGN_IN_FAILED',
  'SIGN_IN_STATE_MISMATCH',
  'IDP_UNAVAILABLE',
  'IDP_BAD_RESPONSE',
  'IDP_DENIED',
  'IDP_STEP_UP_REQUIRED',
  'IDP_STEP_UP_DENIED',
  'IDP_STEP_UP_TIMEOUT',
  'OBO_INVALID',
  'REFRESH_FAILED',
  'CLIENT_REGISTRATION_FAILED',
  // keychain
  'KEYCHAIN_UNAVAILABLE',
  'KEYCHAIN_LOCKED',
  // policy and approvals
  'POLICY_BLOCKED',
  'SQL_UNPARSABLE',
  'SQL_MULTI_STATEMENT',
  'SQL_NOT_READ_ONLY',
  'SQL_UNCLASSIFIABLE',
  'SQL_FUNCTION_NOT_ALLOWED',
  'APPROVAL_DENIED',
  'APPROVAL_TIMEOUT',
  'APPROVAL_UNAVAILABLE',
  'APPROVAL_NOT_PROVEN',
  // Vault
  'VAULT_UNAVAILABLE',
  'VAULT_SEALED',
  'VAULT_PERMISSION_DENIED',
  'VAULT_LOGIN_FAILED',
  'VAULT_BAD_RESPONSE',
  'VAULT_REVOKE_FAILED',
  // targets
  'DB_UNAVAILABLE',
  'DB_AUTH_FAILED',
  'DB_TIMEOUT',
  'DB_PERMISSION_DENIED',
  'DB_ERROR',
  'RESULT_TOO_LARGE',
  'UPSTREAM_UNAVAILABLE',
  'UPSTREAM_BAD_RESPONSE',
  'UPSTREAM_DENIED',
  'UPSTREAM_METADATA_MISMATCH',
  // process plumbing
  'APP_NOT_RUNNING',
  'HANDSHAKE_FAILED',
  'SOCKET_UNSAFE',
  'ALREADY_RUNNING',
  'CANCELLED',
  'TIMEOUT',
  'AUDIT_FAILED',
  'AUDIT_REDACTION_REFUSED',
  'AUDIT_READ_ONLY',
  'AUDIT_ANCHOR_FAILED',
  'AUDIT_TAMPERED',
  'EXPORT_FAILED',
  'INTERNAL',
  // the UI's hosts (headless web host, Electron IPC)
  'NOT_FOUND',
  'WEB_FORBIDDEN',
  'WEB_UNAUTHORIZED',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

/** What crosses a process boundary: a stable code and a message for a person. Nothing else. */
export interface WireError {
  code: ErrorCode;
  message: string;
}

/** What a resource server's RFC 9470 §3 challenge demands: space-separated `acr_values` and/or `max_age`. */
export interface StepUpDemand {
  acrValues?: string;
  maxAge?: number;
}

export class AppError extends Error {
  readonly code: ErrorCode;
  /** Set on IDP_STEP_UP_REQUIRED when a resource server said what login it needs (RFC 9470). */
  readonly stepUp?: StepUpDemand;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; stepUp?: StepUpDemand }) {
    super(message, options);
    this.name = 'AppError';
    this.code = code;
    if (options?.stepUp) this.stepUp = options.stepUp;
  }

  toWire(): WireError {
    return { code: this.code, message: this.message };
  }

  static is(value: unknown, code?: ErrorCode): value is AppError {
    return value instanceof AppError && (code === undefined || value.code === code);
  }

  /**
   * Wraps anything thrown into an AppError without copying its text: a foreign error's message may
   * carry a secret (a connection string, a token in a URL), so only our own messages travel.
   */
  static from(value: unknown, fallback: ErrorCode = 'INTERNAL', message = 'An internal error occurred.'): AppError {
    if (value instanceof AppError) return value;
    if (isAbort(value)) return new AppError('CANCELLED', 'The call was cancelled.', { cause: value });
    return new AppError(fallback, message, { cause: value });
  }
}

function isAbort(value: unknown): boolean {
  return typeof value === 'object' && value !== null && (value as { name?: unknown }).name === 'AbortError';
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

/** Parses a `{code, message}` that came over a boundary; anything else becomes INTERNAL. */
export function fromWire(value: unknown): AppError {
  if (typeof value === 'object' && value !== null) {
    const { code, message } = value as { code?: unknown; message?: unknown };
    if (isErrorCode(code) && typeof message === 'string') return new AppError(code, message);
  }
  return new AppError('INTERNAL', 'An unreadable error came over a process boundary.');
}
