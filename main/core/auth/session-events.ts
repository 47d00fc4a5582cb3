/**
 * What the sign-in session tells others: its state for the UI (never a token), the sign-outs that
 * make approval caches forget, and one audit record per sign-in, step-up and sign-out.
 */
import type { AppError, ErrorCode } from '../../../common/errors.ts';
import type { AuditSink, UserIdentity } from '../ports.ts';

/** The session as the UI sees it. It never carries a token. */
export type AuthStatus =
  | { state: 'signed_out' }
  | { state: 'signing_in'; url: string; userCode?: string }
  | { state: 'signed_in'; user: UserIdentity; acr?: string; persistent: boolean }
  | { state: 'needs_sign_in'; code: ErrorCode; reason: string };

export type AuthRecordKind = 'sign_in' | 'sign_out' | 'step_up';
export type AuthRecordOutcome = 'success' | 'error' | 'cancelled' | 'timeout' | 'denied';

export class SessionEvents {
  readonly #audit: AuditSink | undefined;
  readonly #issuer: string;
  readonly #demo: boolean;
  readonly #log: (line: string) => void;
  readonly #statusListeners = new Set<(s: AuthStatus) => void>();
  readonly #signOutListeners = new Set<(user: UserIdentity | null) => void>();
  #status: AuthStatus = { state: 'signed_out' };

  constructor(o: { audit: AuditSink | undefined; issuer: string; demo: boolean; log: (line: string) => void }) {
    this.#audit = o.audit;
    this.#issuer = o.issuer;
    this.#demo = o.demo;
    this.#log = o.log;
  }

  /** The state as it is: callers that hand it out clone it (`AuthService.status()`). */
  get current(): AuthStatus {
    return this.#status;
  }

  set(status: AuthStatus): void {
    this.#status = status;
    for (const l of this.#statusListeners) {
      try {
        l(structuredClone(this.#status));
      } catch {
        /* a listener's failure is its own */
      }
    }
  }

  onStatus(listener: (status: AuthStatus) => void): () => void {
    this.#statusListeners.add(listener);
    return () => this.#statusListeners.delete(listener);
  }

  onSignOut(listener: (user: UserIdentity | null) => void): () => void {
    this.#signOutListeners.add(listener);
    return () => this.#signOutListeners.delete(listener);
  }

  signedOut(user: UserIdentity | null): void {
    for (const l of this.#signOutListeners) {
      try {
        l(user);
      } catch {
        /* a listener's failure is its own */
      }
    }
  }

  /** One audit record; a store that refuses it is logged, never the sign-in's failure. */
  async record(kind: AuthRecordKind, outcome: AuthRecordOutcome, user: UserIdentity | null, error?: AppError, summary?: string): Promise<void> {
    if (!this.#audit) return;
    try {
      await this.#audit.append({
        kind,
        outcome,
        user,
        target: this.#issuer,
        ...(error ? { error: error.toWire() } : {}),
        ...(summary ? { summary } : {}),
        ...(this.#demo ? { demo: true } : {}),
      });
    } catch {
      this.#log(`auth: could not write the ${kind} audit record`);
    }
  }
}

/** The outcome a failed sign-in is recorded with. */
export function signInFailureOutcome(code: ErrorCode): AuthRecordOutcome {
  if (code === 'SIGN_IN_CANCELLED') return 'cancelled';
  if (code === 'SIGN_IN_TIMEOUT') return 'timeout';
  if (code === 'IDP_DENIED') return 'denied';
  return 'error';
}
