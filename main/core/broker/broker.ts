/**
 * The per-call broker (docs/architecture.md "One call, hop by hop"): validate → classify (the
 * connector's plan) → approve (the Approver port) → the call's credential (credentials.ts: exchange,
 * Vault, revoked when its scope ends) → execute → one audit record → answer. One AbortSignal runs
 * through every hop; what a hop mints is revoked whatever happens after it, cancellation included.
 */
import { performance } from 'node:perf_hooks';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { AppError } from '../../../common/errors.ts';
import type { Hop } from '../../../common/audit-record.ts';
import type { AuditSink, CallJournal } from '../ports.ts';
import type { CallPlan, Connector, ToolCallRequest, ToolHost } from '../connectors/types.ts';
import { hopOutcome, lets, refusal, refusalError, via } from '../approvals/decision.ts';
import { tierOneOnlyApprover, type Approver } from './approver.ts';
import type { CredentialOptions } from './call-credential.ts';
import { recordedId, shownToolName, unanswerable, unfitArguments } from './call-bounds.ts';
import { auditRecord } from './call-record.ts';
import { CallTrace, round } from './call-trace.ts';
import { createRecordWriter } from './record-writer.ts';
import { createCredentials, type Credentials } from './credentials.ts';

export interface BrokerOptions extends CredentialOptions {
  connectors: Connector[];
  audit: AuditSink;
  /**
   * Where per-call credentials come from, shared with the connectors that need one outside a call.
   * Built from these options when absent.
   */
  credentials?: Credentials;
  /** Asked for tier-2/3 calls. Without one, `tierOneOnlyApprover` refuses them. */
  approver?: Approver;
  /** Tags every audit record as written against the local lab. */
  demo?: boolean;
  /** Notes calls in flight durably, so a core that dies mid-call closes them as aborted on restart. */
  journal?: CallJournal;
  /**
   * Told when a call arrives before anyone has signed in, after it has been answered: the host brings
   * the app (or the web UI) in front of the person so they can sign in.
   */
  onSignInNeeded?: () => void;
  /**
   * When Claude gets the answer. `after-record` (default): once the credential is revoked and shown
   * dead and the call's record is written, so no result leaves without its record. `on-result`: as
   * soon as the target's result is in hand, the revocation, its check and the record following (the
   * journal closes the call should the core die first); a record that cannot be written then no
   * longer turns the answer into AUDIT_FAILED. Measured in docs/benchmarks.md ("When to answer").
   */
  answer?: 'after-record' | 'on-result';
}

/** The answer to a call made before sign-in: at once, saying what to do. */
const SIGN_IN_FIRST =
  'You are not signed in to Countersign, so this call was not run. Sign in in the Countersign window that has just opened (or run `npx countersign open`), then ask again.';

export interface Broker extends ToolHost {
  /**
   * Lets every connector that can list ahead of a client do so (the user just signed in); a
   * connector that fails is logged and left to the next listing. Never throws.
   */
  warm(): Promise<void>;
  /** Waits (up to `drainMs`) for calls in flight to revoke what they hold, then closes the connectors. */
  close(drainMs?: number): Promise<void>;
}

export function createBroker(options: BrokerOptions): Broker {
  const approver = options.approver ?? tierOneOnlyApprover;
  const credentials = options.credentials ?? createCredentials(options);
  const log = options.log ?? (() => {});
  const listeners = new Set<() => void>();
  const unsubscribe = options.connectors.map((c) => c.onToolsChanged?.(() => listeners.forEach((l) => l())));
  if (!options.approver) log('broker: no approver configured; tier-2 and tier-3 calls will be refused');

  const connectorFor = (tool: string): Connector | undefined =>
    options.connectors.find((c) => c.hasTool(tool));

  const records = createRecordWriter(options.audit, log);

  async function callTool(request: ToolCallRequest, onResult?: (result: CallToolResult) => void): Promise<CallToolResult> {
    const started = performance.now();
    const trace = new CallTrace(options.journal, log);
    trace.keys.mcp_request_id = recordedId(request.requestId);
    trace.keys.mcp_session_id = request.sessionId;
    const signal = request.signal;
    const user = options.tokens.user();
    // What the client chose, as far as the call runs and is recorded (call-bounds.ts).
    const unfit = unfitArguments(request.args);
    const name = shownToolName(request.name);
    // The journal is on the audit store's disk: when it cannot be written, nothing the call would
    // do could be recorded either, so the call is refused before any token is exchanged.
    let unjournaled: AppError | undefined;
    try {
      options.journal?.begin(trace.id, {
        tool: name,
        startedAt: new Date().toISOString(),
        user,
        client: request.client,
        keys: { ...trace.keys },
        ...(options.demo ? { demo: true } : {}),
      });
    } catch (error) {
      log(
        `broker: the in-flight journal could not be written (${AppError.from(error).code}); refusing the call`,
      );
      unjournaled = new AppError(
        'AUDIT_FAILED',
        'Countersign cannot write to its audit store (is its disk full?), so it did not run this call.',
        { cause: error },
      );
    }
    let plan: CallPlan | undefined;
    let result: CallToolResult | undefined;
    let failure: AppError | undefined;
    let approvalId: string | undefined;

    try {
      if (unjournaled) throw unjournaled;
      const connector = await trace.hop('validate', async () => {
        signal.throwIfAborted();
        if (unfit) throw unfit;
        const c = connectorFor(request.name);
        if (!c) throw new AppError('TOOL_UNKNOWN', `There is no tool named ${name}.`);
        // Nothing below can work without the person's token: answer now rather than after a listing,
        // an approval or an exchange that can only fail.
        if (!user) throw new AppError('NOT_SIGNED_IN', SIGN_IN_FIRST);
        // Arguments its record would be refused for are refused before anything runs.
        const carried = options.audit.refusals?.({ args: request.args }) ?? [];
        if (carried.length > 0)
          throw new AppError(
            'AUDIT_REDACTION_REFUSED',
            `The call's arguments carry something that looks like a secret (${carried.join(', ')}), and this installation's audit policy refuses such calls, so it was not run.`,
          );
        return c;
      });
      plan = await trace.hop(
        'classify',
        () => connector.plan(request.name, request.args),
        (p) => `tier ${p.tier}: ${p.reason}`,
      );
      const p = plan;
      trace.journalSoon((j) => j.note(trace.id, { tier: p.tier, target: p.target }));
      if (p.tier === 4) {
        trace.record('approval', 'denied', 0, { code: 'POLICY_BLOCKED' });
        throw new AppError('POLICY_BLOCKED', refusal.blocked(p));
      }
      let idpApproval: Hop | undefined;
      if (p.tier === 1) {
        trace.record('approval', 'skipped', 0);
      } else {
        const decision = await trace.hop(
          'approval',
          async () => {
            const d = await approver.approve(
              p,
              {
                requestId: request.requestId,
                sessionId: request.sessionId,
                client: request.client,
                user,
                progress: request.progress,
              },
              signal,
            );
            if (d.outcome === 'cancelled') throw refusalError(d, p);
            signal.throwIfAborted();
            if (!lets(d)) throw refusalError(d, p);
            return d;
          },
          via,
        );
        approvalId = decision.approvalId;
        const hop = trace.hops[trace.hops.length - 1]!;
        hop.outcome = hopOutcome(decision.outcome);
        if (decision.outcome === 'idp') idpApproval = hop;
      }

      try {
        result = await runWithCredential(connector, p, request, trace, user?.sub, idpApproval, onResult);
      } catch (error) {
        // RFC 9470: the target wants a stronger or fresher login. Re-login with what it demands, then
        // one fresh exchange (never the old OBO) and one retry.
        if (!AppError.is(error, 'IDP_STEP_UP_REQUIRED') || !error.stepUp) throw error;
        const demand = error.stepUp;
        request.progress('The service asks you to sign in again with a stronger method…');
        await trace.hop(
          'step_up',
          () => options.tokens.stepUp(demand, signal),
          () => `re-login acr_values=${demand.acrValues ?? '-'} max_age=${demand.maxAge ?? '-'}`,
        );
        result = await runWithCredential(connector, p, request, trace, user?.sub, idpApproval, onResult);
      }
    } catch (error) {
      failure = AppError.from(error);
      // The session's deadline aborts with its own reason (a time-out, said as such); the client's cancellation with none.
      if (signal.aborted && AppError.is(signal.reason, 'TIMEOUT')) failure = signal.reason;
      else if (signal.aborted && failure.code !== 'CANCELLED')
        failure = new AppError('CANCELLED', 'The call was cancelled.', { cause: error });
    }
    if (approvalId !== undefined) {
      // A write that changed no row keeps no approval: a yes to a DELETE of nothing would otherwise
      // cover the next DELETE of the same scope, which does delete.
      const changedNothing = (result?.structuredContent as { rowCount?: unknown } | undefined)?.rowCount === 0;
      try {
        approver.settle?.(approvalId, !failure && !changedNothing);
      } catch (error) {
        log(`broker: the approval's outcome could not be noted (${AppError.from(error).code})`);
      }
    }

    const revokeUnproven = trace.hops.some(
      (h) =>
        (h.name === 'revoke' || h.name === 'revoke_check') && h.outcome !== 'ok' && h.outcome !== 'skipped',
    );
    const durationMs = round(performance.now() - started);
    const { record, error } = auditRecord({
      kind: 'tool_call',
      trace,
      user,
      client: request.client,
      tool: name,
      ...(plan ? { plan } : {}),
      ...(unfit ? {} : { args: request.args }),
      ...(failure ? { failure } : {}),
      summary: (outcome) => summary(name, plan, outcome, revokeUnproven),
      delegation: credentials.delegation,
      ...(options.demo ? { demo: true } : {}),
      durationMs,
    });
    const { audited, refused } = await records.write(record, trace, String(request.requestId));
    log(
      `broker: ${name} tier=${plan?.tier ?? '-'} outcome=${record.outcome}${failure ? ` code=${failure.code}` : ''} jti=${trace.keys.obo_jti ?? '-'} role=${trace.keys.db_role ?? '-'} ms=${durationMs}`,
    );
    if (failure?.code === 'NOT_SIGNED_IN') options.onSignInNeeded?.();
    if (failure?.code === 'TOOL_UNKNOWN') throw failure; // a JSON-RPC error (-32602) at the MCP layer
    if (refused && !failure) {
      return errorResult(
        refused.code === 'AUDIT_REDACTION_REFUSED'
          ? new AppError(
              'AUDIT_REDACTION_REFUSED',
              `${refused.message} This installation's audit policy refuses to store such a record, so the call was recorded without its arguments and its result is withheld.`,
            )
          : new AppError('AUDIT_FAILED', "The call ran, but its record could be stored only without its arguments and details, so its result is withheld."),
      );
    }
    if (!audited) {
      return errorResult(
        new AppError(
          'AUDIT_FAILED',
          failure
            ? `${error!.message} The audit record could not be written either.`
            : 'The call ran, but its audit record could not be written; check the audit store.',
        ),
      );
    }
    if (failure) return errorResult(new AppError(failure.code, error!.message));
    return result!;
  }

  /** Executes the plan with its own credential, revoked when this scope ends whatever happened in it. */
  async function runWithCredential(
    connector: Connector,
    plan: CallPlan,
    request: ToolCallRequest,
    trace: CallTrace,
    expectedSub: string | undefined,
    idpApproval: Hop | undefined,
    onResult: ((result: CallToolResult) => void) | undefined,
  ): Promise<CallToolResult> {
    await using held = credentials.open(plan, trace, {
      signal: request.signal,
      progress: request.progress,
      expectedSub,
      ...(idpApproval ? { idpApproval } : {}),
      target: connector,
    });
    const { obo, credential } = await held.obtain();
    const answer = await trace.hop(
      'execute',
      async () =>
        // A target that echoes this call's token or password (a hostile upstream, a row holding it) does not pass it on to Claude.
        trace.secrets.maskDeep(
          await connector.execute({
        plan,
        args: request.args,
        obo: obo.token,
        oboJti: obo.jti,
        credential,
        signal: request.signal,
        progress: request.progress,
        note: (keys) => {
          if (keys.db_role) trace.keys.db_role = keys.db_role;
          if (keys.upstream_request_id) trace.keys.upstream_request_id = keys.upstream_request_id;
        },
          }),
        ),
      (a) => (a.masked ? "the result carried this call's own credential; masked in the answer" : undefined),
    );
    const tooLarge = unanswerable(answer.value);
    if (tooLarge) throw tooLarge;
    onResult?.(answer.value);
    return answer.value;
  }

  return {
    /**
     * Every connector's tools. A connector that cannot list (an upstream down, the user not signed
     * in yet, the IdP refusing the listing) is left out of this answer rather than taking the others
     * with it; its failure is logged (and, for upstreams, recorded by `Credentials.withCredential`).
     */
    async listTools(): Promise<Tool[]> {
      const lists = await Promise.allSettled(options.connectors.map((c) => c.listTools()));
      return lists.flatMap((r, i) => {
        if (r.status === 'fulfilled') return r.value;
        log(
          `broker: the tools of ${options.connectors[i]?.name ?? '?'} are left out of this list (${AppError.from(r.reason).code})`,
        );
        return [];
      });
    },
    callTool(request) {
      if (options.answer !== 'on-result') return credentials.track(callTool(request));
      // The first to settle answers: the result once in hand, or whatever the call ends with.
      return new Promise((resolve, reject) => void credentials.track(callTool(request, resolve)).then(resolve, reject));
    },
    async warm() {
      await Promise.all(
        options.connectors.map((c) =>
          c
            .warm?.()
            .catch((error: unknown) =>
              log(`broker: ${c.name} could not list its tools after sign-in (${AppError.from(error).code})`),
            ),
        ),
      );
    },
    onToolsChanged(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    /**
     * Quitting drains: calls still in flight (their sessions have been closed, so their signals have
     * fired) finish their own scope, which revokes what they hold and writes their record, before the
     * connectors, Vault client and audit store behind them go away.
     */
    async close(drainMs = 15_000) {
      for (const u of unsubscribe) u?.();
      await credentials.drain(drainMs, (n) =>
        log(`broker: waiting for ${n} call(s) in flight to revoke what they hold`),
      );
      await Promise.all(options.connectors.map((c) => c.close?.()));
    },
  };
}

function summary(tool: string, plan: CallPlan | undefined, outcome: string, revokeUnproven: boolean): string {
  const base = plan ? `${tool} on ${plan.target}: ${plan.reason} → ${outcome}` : `${tool} → ${outcome}`;
  return revokeUnproven ? `${base}; revocation not confirmed` : base;
}

/** MCP tool execution error (MCP 2025-11-25, server/tools "Error Handling"): `isError` with a reason a person can act on. */
export function errorResult(error: AppError): CallToolResult {
  return { isError: true, content: [{ type: 'text', text: `${error.message} [${error.code}]` }] };
}
