/** What the doctor reports and what it is given: shared by its checks, the CLI and the setup screen. */
import type { webcrypto } from 'node:crypto';
import type { AppConfig } from '../config/config.ts';
import type { ExchangeClient } from '../idp/token-exchange.ts';
import type { SecretStore } from '../ports.ts';

export type FindingStatus = 'ok' | 'warn' | 'fail' | 'skip';
export type Party = 'idp' | 'delegation' | 'exchange' | 'vault' | 'database' | 'upstream';

export interface Finding {
  party: Party;
  check: string;
  status: FindingStatus;
  /** What was found, as a sentence. */
  says: string;
  /** What to do about it, when there is something to do. */
  fix?: string;
  /** The OBO's claims (never the token itself) for an exchange check. */
  claims?: Record<string, unknown>;
}

/** Adds a finding to the report being built. */
export type AddFinding = (f: Finding) => void;

export interface DoctorReport {
  ok: boolean;
  delegation: { configured: 'rar' | 'scopes'; fits: 'rar' | 'scopes' | 'unknown' };
  findings: Finding[];
}

/** A signed-in session the doctor may exchange with (the sign-in module's, or a throwaway one). */
export interface DoctorSession {
  accessToken(signal?: AbortSignal): Promise<string>;
  sub?: string;
  client?: () => Promise<ExchangeClient>;
  dpopKeyPair?: () => webcrypto.CryptoKeyPair | undefined;
}

export interface DoctorOptions {
  config: AppConfig;
  /** Absent: the exchange checks are skipped and the report cannot be ok. */
  session?: DoctorSession;
  /** The keychain, for this install's exchange key when `idp.exchangeClientId` is set (read, or made once). */
  secrets?: SecretStore;
  timeoutMs?: number;
}
