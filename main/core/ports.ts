/**
 * The capabilities that differ between hosts (Electron, headless, tests) or that one part of the core
 * offers another. They come in as constructor arguments; no DI framework.
 */
import type { webcrypto } from 'node:crypto';
import type { AuditRecord, AuditRecordInput, JoinKeys } from '../../common/audit-record.ts';

type CryptoKeyPair = webcrypto.CryptoKeyPair;

/** Where secrets persist: the OS keychain, or nothing at all when none is usable (never a file). */
export interface SecretStore {
  readonly kind: 'keychain' | 'memory';
  get(key: string): Promise<string | null>;
  set(key: string, value: string): Promise<void>;
  delete(key: string): Promise<void>;
}

/** Opens a URL in the system browser (Electron's `shell.openExternal`, or the OS opener headless). */
export type OpenExternal = (url: string) => Promise<void>;

export interface UserIdentity {
  sub: string;
  name?: string;
  email?: string;
}

/** An RFC 9470 challenge from a resource server, or the broker's own demand for a stronger login. */
export interface StepUpChallenge {
  acrValues?: string;
  maxAge?: number;
}

/** The signed-in user's tokens, as the broker and connectors see them. Implemented by main/core/auth. */
export interface TokenSource {
  /** A fresh access token (refreshed if needed; concurrent callers share one refresh). Throws NOT_SIGNED_IN. */
  getAccessToken(signal?: AbortSignal): Promise<string>;
  /** Re-authenticates in the system browser with the demanded `acr_values`/`max_age`. */
  stepUp(challenge: StepUpChallenge, signal?: AbortSignal): Promise<void>;
  user(): UserIdentity | null;
  /** The per-install DPoP key pair when the IdP binds tokens to it (RFC 9449), otherwise undefined. */
  dpopKeyPair(): CryptoKeyPair | undefined;
}

/** Appends to the tamper-evident audit store. Implemented by main/core/audit. */
export interface AuditSink {
  /**
   * `knownSecrets`: what the call held (its trace's secrets), masked from the record in every encoded
   * form. Rejects with AUDIT_REDACTION_REFUSED when the redaction policy refuses records carrying a secret.
   */
  append(record: AuditRecordInput, options?: { knownSecrets?: Iterable<string> }): Promise<AuditRecord>;
  /** Under a policy that refuses records carrying a secret: where `value` carries one (`/args/sql: jwt`), so the call is refused before it runs. */
  refusals?(value: Record<string, unknown>, options?: { knownSecrets?: Iterable<string> }): string[];
}

/** What is known of a call in flight; written durably so a core that dies mid-call can close it on restart. */
export interface JournalEntry {
  tool: string;
  startedAt: string;
  user: UserIdentity | null;
  client?: { name?: string; version?: string; pid?: number; uid?: number };
  tier?: 1 | 2 | 3 | 4;
  target?: string;
  keys: JoinKeys;
  demo?: boolean;
  /** The call's Vault token, sealed with a key from the keychain, so a restarted core can revoke it. */
  sealedVaultToken?: string;
}

/** The calls in flight (main/core/audit/journal.ts). */
export interface CallJournal {
  begin(id: string, entry: JournalEntry): void;
  note(id: string, update: { keys?: JoinKeys; tier?: JournalEntry['tier']; target?: string }): void;
  /** Keeps what a restarted core needs to revoke this call's credential, should this run die first. */
  holdCredential?(id: string, vaultToken: string, keys?: JoinKeys): void;
  end(id: string): void;
}
