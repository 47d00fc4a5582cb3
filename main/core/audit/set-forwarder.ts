import { randomUUID } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import type { AuditRecord } from '../../../common/audit-record.ts';
import { TimeLimit } from '../time-limit.ts';

/**
 * Forwards audit records off the machine as Security Event Tokens (RFC 8417), signed with the install's
 * Ed25519 key and pushed to a receiver (RFC 8935). Sign-in and sign-out use the OpenID CAEP event types
 * (`session-established`, `session-revoked`); tool calls, step-ups and approval decisions have no CAEP
 * type, so they use Countersign's own event URIs. Best effort: a bounded queue (the oldest is dropped
 * when full, and counted), retries with exponential back-off on network errors, 429 and 5xx; a 4xx
 * other than 429 is the receiver's permanent refusal (RFC 8935 §2.3) and is not retried. A SET never
 * carries tool arguments: the receiver learns what was done and by whom, and the join keys to look further.
 */
export const CAEP = 'https://schemas.openid.net/secevent/caep/event-type/';
export const COUNTERSIGN_EVENTS = {
  toolCall: 'https://countersign.dev/secevent/event-type/tool-call',
  stepUp: 'https://countersign.dev/secevent/event-type/step-up',
  approval: 'https://countersign.dev/secevent/event-type/approval-decision',
} as const;

export interface SetForwarderOptions {
  /** The receiver's push endpoint (RFC 8935). */
  receiverUrl: string;
  /** SET `iss`: this install (for example `urn:countersign:install:<kid>`). */
  issuer: string;
  /** SET `aud`: the receiver. */
  audience: string;
  /** The IdP's issuer, for CAEP `sub_id` of format `iss_sub`; without it the subject is `opaque`. */
  subjectIssuer?: string;
  signingKey: { privateKey: KeyObject; kid: string };
  /** Most SETs kept while the receiver is unreachable (default 1000). */
  maxQueue?: number;
  /** Attempts per SET before it is given up (default 5). */
  maxAttempts?: number;
  /** First retry delay; doubles each attempt (default 500 ms). */
  backoffMs?: number;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export interface ForwarderStats {
  queued: number;
  delivered: number;
  /** Removed unsent because the queue was full. */
  dropped: number;
  /** Given up after a permanent refusal or the last attempt. */
  failed: number;
}

interface Pending {
  record: AuditRecord;
  attempts: number;
}

export interface SecurityEvent {
  type: string;
  payload: Record<string, unknown>;
  txn?: string;
}

/** The SET event for a record, or null for records that are not forwarded (system notes). */
function securityEventFor(record: AuditRecord, subjectIssuer?: string): SecurityEvent | null {
  const ts = Math.floor(Date.parse(record.at) / 1000);
  const subject = record.user
    ? subjectIssuer
      ? { format: 'iss_sub', iss: subjectIssuer, sub: record.user.sub }
      : { format: 'opaque', id: record.user.sub }
    : undefined;
  const common = { event_timestamp: ts, ...(subject ? { subject } : {}) };
  const txn = record.keys?.obo_jti ?? (record.keys?.mcp_request_id !== undefined ? String(record.keys.mcp_request_id) : undefined);
  switch (record.kind) {
    case 'sign_out':
      return { type: `${CAEP}session-revoked`, payload: { ...common, initiating_entity: 'user' } };
    case 'sign_in':
      if (record.outcome !== 'success') return null;
      return { type: `${CAEP}session-established`, payload: { ...common, initiating_entity: 'user' } };
    case 'step_up':
      return { type: COUNTERSIGN_EVENTS.stepUp, payload: { ...common, outcome: record.outcome, audit_seq: record.seq } };
    case 'approval':
    case 'tool_call':
      return {
        type: record.kind === 'tool_call' ? COUNTERSIGN_EVENTS.toolCall : COUNTERSIGN_EVENTS.approval,
        payload: {
          ...common,
          outcome: record.outcome,
          ...(record.tool ? { tool: record.tool } : {}),
          ...(record.tier ? { tier: record.tier } : {}),
          ...(record.target ? { target: record.target } : {}),
          ...(record.authorization_details ? { authorization_details: record.authorization_details } : {}),
          ...(record.error ? { error_code: record.error.code } : {}),
          keys: record.keys ?? {},
          audit_seq: record.seq,
          audit_hash: record.hash,
        },
        ...(txn ? { txn } : {}),
      };
    default:
      return null;
  }
}

export class SetForwarder {
  readonly #opts: Required<Omit<SetForwarderOptions, 'subjectIssuer'>> & { subjectIssuer?: string };
  readonly #queue: Pending[] = [];
  readonly #stats = { delivered: 0, dropped: 0, failed: 0 };
  #running: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #wake: (() => void) | undefined;
  #closed = false;
  readonly #idle = new Set<() => void>();

  constructor(options: SetForwarderOptions) {
    this.#opts = { maxQueue: 1000, maxAttempts: 5, backoffMs: 500, timeoutMs: 5000, fetch: globalThis.fetch, ...options };
  }

  /** Forwards every record appended from now on; returns the unsubscribe function. */
  attach(store: { onAppend(listener: (r: AuditRecord) => void): () => void }): () => void {
    return store.onAppend((r) => this.enqueue(r));
  }

  enqueue(record: AuditRecord): void {
    if (this.#closed || !securityEventFor(record, this.#opts.subjectIssuer)) return;
    if (this.#queue.length >= this.#opts.maxQueue) {
      this.#queue.shift();
      this.#stats.dropped++;
    }
    this.#queue.push({ record, attempts: 0 });
    this.#running ??= this.#drain().finally(() => {
      this.#running = undefined;
      for (const f of this.#idle) f();
      this.#idle.clear();
    });
  }

  stats(): ForwarderStats {
    return { queued: this.#queue.length, ...this.#stats };
  }

  /** Resolves when the queue is empty (every SET delivered, dropped or given up). */
  async flush(): Promise<void> {
    if (!this.#running) return;
    await new Promise<void>((r) => this.#idle.add(r));
  }

  /** Stops retrying; what is still queued is dropped. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stats.dropped += this.#queue.length;
    this.#queue.length = 0;
    if (this.#timer) clearTimeout(this.#timer);
    this.#wake?.();
    await this.#running;
  }

  /** The signed SET for a record (also what the tests check against a receiver). */
  async sign(record: AuditRecord): Promise<string | null> {
    const event = securityEventFor(record, this.#opts.subjectIssuer);
    if (!event) return null;
    const { subject, ...payload } = event.payload as { subject?: unknown };
    return new SignJWT({
      events: { [event.type]: payload },
      ...(subject ? { sub_id: subject } : {}),
      ...(event.txn ? { txn: event.txn } : {}),
      toe: event.payload.event_timestamp,
    })
      .setProtectedHeader({ alg: 'EdDSA', typ: 'secevent+jwt', kid: this.#opts.signingKey.kid })
      .setIssuer(this.#opts.issuer)
      .setAudience(this.#opts.audience)
      .setIssuedAt()
      .setJti(randomUUID())
      .sign(this.#opts.signingKey.privateKey);
  }

  async #drain(): Promise<void> {
    while (!this.#closed && this.#queue.length > 0) {
      const item = this.#queue[0]!;
      const result = await this.#send(item.record);
      if (this.#closed) return;
      if (this.#queue[0] !== item) continue; // dropped for space while in flight
      if (result === 'ok' || result === 'permanent') {
        this.#queue.shift();
        if (result === 'ok') this.#stats.delivered++;
        else this.#stats.failed++;
        continue;
      }
      item.attempts++;
      if (item.attempts >= this.#opts.maxAttempts) {
        this.#queue.shift();
        this.#stats.failed++;
        continue;
      }
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        this.#timer = setTimeout(resolve, this.#opts.backoffMs * 2 ** (item.attempts - 1));
      });
      this.#wake = undefined;
      this.#timer = undefined;
    }
  }

  async #send(record: AuditRecord): Promise<'ok' | 'retry' | 'permanent'> {
    const set = await this.sign(record);
    if (!set) return 'permanent';
    using limit = new TimeLimit(this.#opts.timeoutMs);
    try {
      const res = await this.#opts.fetch(this.#opts.receiverUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/secevent+jwt', accept: 'application/json' },
        body: set,
        signal: limit.signal,
      });
      await res.body?.cancel();
      if (res.status === 202 || res.status === 200 || res.status === 204) return 'ok';
      if (res.status === 429 || res.status >= 500) return 'retry';
      return 'permanent';
    } catch {
      return 'retry';
    }
  }
}
