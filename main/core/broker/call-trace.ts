/**
 * What one call (or one listing) learns as it goes: its hops with outcome and duration, its join keys,
 * the secrets it held (so they can be scrubbed from anything that leaves it), and its entry in the
 * in-flight journal, so a core that dies mid-call can close it on restart.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { AppError, type ErrorCode } from '../../../common/errors.ts';
import type { AuditRecordInput, Hop, JoinKeys } from '../../../common/audit-record.ts';
import type { CallJournal } from '../ports.ts';
import { KnownSecrets } from '../audit/redact.ts';

const OUTCOME_BY_CODE: Partial<Record<ErrorCode, AuditRecordInput['outcome']>> = {
  CANCELLED: 'cancelled',
  APPROVAL_TIMEOUT: 'timeout',
  IDP_STEP_UP_TIMEOUT: 'timeout',
  DB_TIMEOUT: 'timeout',
  TIMEOUT: 'timeout',
  APPROVAL_DENIED: 'denied',
  APPROVAL_UNAVAILABLE: 'denied',
  APPROVAL_NOT_PROVEN: 'denied',
  POLICY_BLOCKED: 'denied',
  IDP_DENIED: 'denied',
  IDP_STEP_UP_DENIED: 'denied',
  VAULT_PERMISSION_DENIED: 'denied',
  VAULT_LOGIN_FAILED: 'denied',
  DB_PERMISSION_DENIED: 'denied',
};

/** The record's outcome for a call that ended with `failure` (or succeeded). */
export function outcomeOf(failure: AppError | undefined): AuditRecordInput['outcome'] {
  return failure ? (OUTCOME_BY_CODE[failure.code] ?? 'error') : 'success';
}

export function hopOutcome(error: AppError): Hop['outcome'] {
  const o = OUTCOME_BY_CODE[error.code];
  return o === 'cancelled' ? 'cancelled' : o === 'timeout' ? 'timeout' : o === 'denied' ? 'denied' : 'error';
}

export const round = (ms: number): number => Math.round(ms * 100) / 100;

/** Per-call state: hops, join keys, the secrets to scrub from anything that leaves the call, its journal entry. */
export class CallTrace {
  readonly id = randomUUID();
  readonly hops: Hop[] = [];
  readonly keys: JoinKeys = {};
  /** What the call obtained that must not leave it: masked from its answer here, from its record by the audit store. */
  readonly secrets = new KnownSecrets();
  readonly #journal: CallJournal | undefined;
  /** Journal writes due in the next turn (`journalSoon`). */
  #soon: Array<(j: CallJournal) => void> = [];
  readonly #log: (line: string) => void;

  /** Without a journal (a listing, which no restart needs to close) nothing is noted. */
  constructor(journal?: CallJournal, log: (line: string) => void = () => {}) {
    this.#journal = journal;
    this.#log = log;
  }

  async hop<T>(
    name: Hop['name'],
    run: () => Promise<T>,
    detail?: (value: T) => string | undefined,
  ): Promise<T> {
    const start = performance.now();
    try {
      const value = await run();
      const d = detail?.(value);
      this.hops.push({
        name,
        outcome: 'ok',
        ms: round(performance.now() - start),
        ...(d ? { detail: d } : {}),
      });
      return value;
    } catch (error) {
      const e = AppError.from(error);
      this.hops.push({ name, outcome: hopOutcome(e), ms: round(performance.now() - start), code: e.code });
      throw e;
    }
  }

  record(
    name: Hop['name'],
    outcome: Hop['outcome'],
    ms: number,
    extra: { code?: string; detail?: string } = {},
  ): void {
    this.hops.push({ name, outcome, ms: round(ms), ...extra });
  }

  /** The journal is a durability aid: a failure to write it is logged, never a reason to fail the call. */
  journal(write: (j: CallJournal) => void): void {
    if (!this.#journal) return;
    // Notes due in the next turn go first: the journal sees the call's writes in the order they were made.
    if (this.#soon.length > 0) this.#writeSoon();
    try {
      write(this.#journal);
    } catch (error) {
      this.#log(`broker: the in-flight journal could not be written (${AppError.from(error).code})`);
    }
  }

  /**
   * A write that only adds to what a restarted core would show of the call (its tier and target, a
   * join key), not what it must revoke: made in the next turn of the event loop, while the request
   * that follows is on its way, or before the call's next write, whichever comes first.
   */
  journalSoon(write: (j: CallJournal) => void): void {
    if (!this.#journal) return;
    this.#soon.push(write);
    if (this.#soon.length === 1) setImmediate(() => this.#writeSoon());
  }

  #writeSoon(): void {
    const due = this.#soon;
    this.#soon = [];
    for (const write of due) this.journal(write);
  }

  /** Notes the join keys learnt so far, so a restarted core can find what this call minted. */
  noteKeys(): void {
    this.journal((j) => j.note(this.id, { keys: this.keys }));
  }

  /** The same for keys that only join the record (what the call holds is noted already): in the next turn. */
  noteKeysSoon(): void {
    this.journalSoon((j) => j.note(this.id, { keys: this.keys }));
  }

  /** Removes every secret this call has held from a text, raw and in its encoded forms (audit/redact.ts). */
  scrub(text: string): string {
    return this.secrets.mask(text);
  }

  /** The hops as they go into the record: details masked, then bounded. */
  scrubbedHops(): Hop[] {
    return this.hops.map((h) => (h.detail ? { ...h, detail: this.scrub(h.detail).slice(0, 2000) } : h));
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
