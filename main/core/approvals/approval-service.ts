/**
 * Approvals (docs/call-chain.md, "Hop by hop"). Tier 1 needs none. Tier 2 (writes): one approval covers writes
 * of the same statement class to the same tables under a row ceiling, per user and MCP session, for 30
 * minutes by default; visible and revocable, cleared on sign-out. It is kept only once a call it covered
 * succeeded (`settle`), and covers a later call only when that call's class is the same and its every
 * change and table is among the approved ones (`covers`). Tier 3 (sensitive): a fresh approval
 * every call, single-use and bound to the digest of the exact bytes that will run and the RAR. Deny is
 * the default; a time-out is a deny and comes before the MCP client's own request time-out (the SDK
 * client gives up at 60 s); Claude's cancellation closes the prompt. Parallel calls each get their own
 * prompt, shown in arrival order. Tiers only add approvals: this service never allows a call the IdP,
 * Vault or the database would refuse.
 */
import { randomUUID } from 'node:crypto';
import type { ApprovalAnswer, ApprovalView } from '../../../common/approval-view.ts';
import type { CachedApproval, PendingApproval } from '../../../common/contract.ts';
import { AppError } from '../../../common/errors.ts';
import type { ApprovalScope, CallPlan } from '../connectors/types.ts';
import type { AuditSink, UserIdentity } from '../ports.ts';
import { hopOutcome, recordOutcome, refusal, type ApprovalDecision } from './decision.ts';
import type { Prompter } from './prompter.ts';
import { callDigest, promptView } from './prompt-view.ts';
import { changesOf, covers } from './scope.ts';

const DEFAULT_CACHE_TTL_MS = 30 * 60_000;
const DEFAULT_TIMEOUT_MS = 45_000;
const PROGRESS_EVERY_MS = 5_000;

export interface ApprovalRequest {
  plan: CallPlan;
  args: Record<string, unknown>;
  user: UserIdentity;
  sessionId: string;
  client?: { name?: string; version?: string; pid?: number };
  signal: AbortSignal;
  /** Progress to the MCP client while the person decides (resets its request time-out). */
  progress?(message: string): void;
}

/** Who asks the person for a tier-3 call (config `approvals.tier3`). */
export type Tier3Approvals = 'local' | 'idp-when-offered';

interface Pending {
  entry: PendingApproval;
  view: ApprovalView;
  resolve(answer: ApprovalAnswer): void;
}

interface Cached {
  entry: CachedApproval;
  key: string;
  user: string;
  session: string;
  rowCeiling: number;
  changes: string[];
}

export interface ApprovalServiceOptions {
  prompter: Prompter;
  audit?: AuditSink;
  cacheTtlMs?: number;
  timeoutMs?: number;
  now?: () => number;
  demo?: boolean;
  /** Default `local`. */
  tier3?: Tier3Approvals;
}

/**
 * Whether the identity provider carries this call's approval. IdP step-up policies key on the RFC 9396
 * `privileges` a call asks for (the lab pushes for `sensitive`), so a tier-3 call whose RAR names a
 * privilege is approved through the IdP; any other tier-3 call (a destructive upstream tool, a table the
 * local policy raised) keeps the local prompt, because its exchange would carry no approval at all.
 */
function idpCarriesApproval(plan: Pick<CallPlan, 'tier' | 'authorizationDetails'>): boolean {
  return plan.tier === 3 && plan.authorizationDetails.some((d) => Array.isArray(d.privileges) && d.privileges.length > 0);
}

export class ApprovalService {
  readonly #prompter: Prompter;
  readonly #audit?: AuditSink;
  readonly #ttl: number;
  readonly #timeout: number;
  readonly #now: () => number;
  readonly #demo: boolean;
  readonly #tier3: Tier3Approvals;
  readonly #pending = new Map<string, Pending>();
  readonly #cache = new Map<string, Cached>();
  /** Approved tier-2 scopes whose call has not ended yet, by approval id: they cover nothing until it succeeds. */
  readonly #provisional = new Map<string, Cached>();
  readonly #listeners = new Set<() => void>();
  /** Prompts go to the person one at a time, in arrival order. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(options: ApprovalServiceOptions) {
    this.#prompter = options.prompter;
    this.#audit = options.audit;
    this.#ttl = options.cacheTtlMs ?? DEFAULT_CACHE_TTL_MS;
    this.#timeout = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#now = options.now ?? Date.now;
    this.#demo = options.demo ?? false;
    this.#tier3 = options.tier3 ?? 'local';
    if (this.#timeout >= 60_000) {
      throw new AppError('CONFIG_INVALID', 'The approval time-out must be shorter than the MCP client request time-out (60 s).');
    }
  }

  get timeoutMs(): number {
    return this.#timeout;
  }

  get tier3(): Tier3Approvals {
    return this.#tier3;
  }

  /** The call's decision (decision.ts), its refusal reason written for the person. */
  async approve(request: ApprovalRequest): Promise<ApprovalDecision> {
    const started = this.#now();
    const { plan } = request;
    const digest = callDigest(plan);
    const ms = () => Math.max(0, this.#now() - started);
    if (plan.tier === 1) return { outcome: 'not_required', digest, ms: 0 };
    if (plan.tier === 4) throw new AppError('POLICY_BLOCKED', refusal.blocked(plan));
    if (request.signal.aborted) return { outcome: 'cancelled', digest, ms: 0, reason: refusal.cancelled() };
    // Asked once, by the IdP: the broker then requires the OBO to prove the push (fail closed).
    if (this.#tier3 === 'idp-when-offered' && idpCarriesApproval(plan)) return { outcome: 'idp', digest, ms: 0 };

    if (plan.tier === 2) {
      const hit = this.#findCached(request);
      if (hit) {
        hit.entry.uses += 1;
        this.#changed();
        const result: ApprovalDecision = { outcome: 'cached', approvalId: hit.entry.id, digest, ms: ms() };
        await this.#record(request, result, 'cache');
        return result;
      }
    }

    const id = randomUUID();
    const requestedAt = new Date(this.#now());
    const expiresAt = new Date(requestedAt.getTime() + this.#timeout);
    const view = promptView({ id, plan, args: request.args, digest, requestedAt, expiresAt, cacheTtlMs: this.#ttl });
    const entry: PendingApproval = {
      id,
      tool: plan.tool,
      target: plan.target,
      tier: plan.tier,
      reason: plan.reason,
      authorization_details: plan.authorizationDetails,
      args: request.args,
      bytes: plan.bytes,
      digest,
      client: request.client,
      requestedAt: requestedAt.toISOString(),
      expiresAt: expiresAt.toISOString(),
    };

    const controller = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => ((timedOut = true), controller.abort()), this.#timeout);
    const onAbort = () => controller.abort();
    request.signal.addEventListener('abort', onAbort, { once: true });
    const ticker = request.progress
      ? setInterval(() => {
          const left = Math.max(0, Math.round((expiresAt.getTime() - Date.now()) / 1000));
          request.progress?.(`Waiting for your approval in Countersign (${left} s left)…`);
        }, PROGRESS_EVERY_MS)
      : undefined;
    request.progress?.('Waiting for your approval in Countersign…');

    let answer: ApprovalAnswer;
    try {
      answer = await new Promise<ApprovalAnswer>((resolve) => {
        let settled = false;
        const settle = (d: ApprovalAnswer) => {
          if (settled) return;
          settled = true;
          this.#pending.delete(id);
          this.#changed();
          controller.abort();
          resolve(d);
        };
        this.#pending.set(id, { entry, view, resolve: settle });
        this.#changed();
        controller.signal.addEventListener('abort', () => settle('deny'), { once: true });
        this.#queue = this.#queue.then(async () => {
          if (settled) return;
          try {
            settle(await this.#prompter.prompt(view, controller.signal));
          } catch {
            settle('deny');
          }
        });
      });
    } finally {
      clearTimeout(timer);
      if (ticker) clearInterval(ticker);
      request.signal.removeEventListener('abort', onAbort);
    }

    const result: ApprovalDecision = request.signal.aborted
      ? { outcome: 'cancelled', reason: refusal.cancelled() }
      : timedOut
        ? { outcome: 'timeout', reason: refusal.timedOut(plan, this.#timeout) }
        : answer === 'approve'
          ? { outcome: 'approved' }
          : { outcome: 'denied', reason: refusal.denied(plan) };
    Object.assign(result, { approvalId: id, digest, ms: ms() });
    if (result.outcome === 'approved' && plan.tier === 2 && plan.approvalScope) this.#remember(request, id);
    await this.#record(request, result, 'person');
    return result;
  }

  /** The headless approval card's answer. The digest must be the one shown: an approval cannot be moved to other arguments. */
  decide(id: string, answer: ApprovalAnswer, digest: string): void {
    const p = this.#pending.get(id);
    if (!p) throw new AppError('INPUT_INVALID', 'That approval is no longer pending.');
    if (p.entry.digest !== digest) {
      throw new AppError('INPUT_INVALID', 'That approval was shown for a different call; it was not applied.');
    }
    p.resolve(answer);
  }

  /** Deny from the app window's pending list (which, on the desktop, cannot approve). */
  deny(id: string): void {
    const p = this.#pending.get(id);
    if (!p) throw new AppError('INPUT_INVALID', 'That approval is no longer pending.');
    p.resolve('deny');
  }

  revoke(id: string): void {
    for (const [key, c] of this.#cache) if (c.entry.id === id) this.#cache.delete(key);
    this.#provisional.delete(id);
    this.#changed();
  }

  /**
   * How a call approved as `id` ended. A tier-2 approval starts to cover later calls only when its first
   * call succeeded; a failed call (refused downstream, rolled back for the row ceiling) leaves nothing,
   * and a cached approval whose call failed is dropped, so the next call asks again.
   */
  settle(id: string, succeeded: boolean): void {
    const provisional = this.#provisional.get(id);
    this.#provisional.delete(id);
    if (!succeeded) {
      for (const [key, c] of this.#cache) if (c.entry.id === id) this.#cache.delete(key);
      this.#changed();
      return;
    }
    if (!provisional || Date.parse(provisional.entry.expiresAt) <= this.#now()) return;
    this.#cache.set(`${provisional.key}:${provisional.entry.id}`, provisional);
    this.#changed();
  }

  /** Sign-out forgets every cached approval and denies every pending one. */
  clear(): void {
    this.#cache.clear();
    this.#provisional.clear();
    for (const p of [...this.#pending.values()]) p.resolve('deny');
    this.#changed();
  }

  pending(): PendingApproval[] {
    return [...this.#pending.values()].map((p) => p.entry);
  }

  cached(): CachedApproval[] {
    this.#expire();
    return [...this.#cache.values()].map((c) => c.entry);
  }

  onChange(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #changed(): void {
    for (const l of this.#listeners) l();
  }

  #scopeKey(request: ApprovalRequest): string | null {
    const scope = request.plan.approvalScope;
    if (!scope) return null;
    return JSON.stringify([request.user.sub, request.sessionId, request.plan.connector, request.plan.target, scope.statementClass]);
  }

  #expire(): void {
    const now = this.#now();
    for (const [key, c] of this.#cache) if (Date.parse(c.entry.expiresAt) <= now) this.#cache.delete(key);
    for (const [id, c] of this.#provisional) if (Date.parse(c.entry.expiresAt) <= now) this.#provisional.delete(id);
  }

  #findCached(request: ApprovalRequest): Cached | null {
    this.#expire();
    const scope = request.plan.approvalScope;
    const key = this.#scopeKey(request);
    if (!scope || !key) return null;
    for (const c of this.#cache.values()) {
      if (c.key !== key) continue;
      const approved: ApprovalScope = { statementClass: c.entry.statementClass, targets: c.entry.targets, changes: c.changes, rowCeiling: c.rowCeiling };
      if (covers(approved, scope)) return c;
    }
    return null;
  }

  /** Holds an approved tier-2 scope until its call ends (`settle`); a scope that can cover nothing is not kept. */
  #remember(request: ApprovalRequest, id: string): void {
    const scope = request.plan.approvalScope!;
    if (!covers(scope, scope)) return;
    const key = this.#scopeKey(request)!;
    const now = this.#now();
    const changes = [...new Set(changesOf(scope))].sort();
    const entry: CachedApproval = {
      id,
      tool: request.plan.tool,
      target: request.plan.target,
      statementClass: scope.statementClass,
      targets: [...new Set(scope.targets)].sort(),
      changes,
      rowCeiling: scope.rowCeiling,
      grantedAt: new Date(now).toISOString(),
      expiresAt: new Date(now + this.#ttl).toISOString(),
      uses: 0,
    };
    this.#provisional.set(id, {
      entry,
      key,
      user: request.user.sub,
      session: request.sessionId,
      rowCeiling: scope.rowCeiling ?? Number.POSITIVE_INFINITY,
      changes,
    });
  }

  async #record(request: ApprovalRequest, result: ApprovalDecision, by: 'person' | 'cache'): Promise<void> {
    if (!this.#audit) return;
    const ms = result.ms ?? 0;
    await this.#audit.append({
      kind: 'approval',
      outcome: recordOutcome(result.outcome),
      user: request.user,
      client: request.client,
      tool: request.plan.tool,
      tier: request.plan.tier,
      target: request.plan.target,
      authorization_details: request.plan.authorizationDetails,
      hops: [{ name: 'approval', outcome: hopOutcome(result.outcome), ms }],
      keys: { mcp_session_id: request.sessionId },
      summary: `${by === 'cache' ? 'Covered by a cached approval' : result.outcome === 'approved' ? 'Approved by the user' : `Approval ${result.outcome}`} (${(result.digest ?? '').slice(0, 19)}…)`,
      demo: this.#demo || undefined,
      duration_ms: ms,
    });
  }
}
