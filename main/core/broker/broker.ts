/**
 * The per-call broker (docs/architecture.md "One call, hop by hop"): validate → classify (the
 * connector's plan) → approve (the Approver port) → exchange (RFC 8693 + RFC 9396, every call) →
 * Vault login and credential → execute → revoke in a `finally` and check the credential is dead →
 * one audit record → answer. One AbortSignal runs through every hop; what a hop mints is revoked
 * whatever happens after it, cancellation included.
 */
import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { AppError, type ErrorCode } from '../../../common/errors.ts';
import type { AuditRecordInput, Hop, JoinKeys } from '../../../common/audit-record.ts';
import type { AuditSink, CallJournal, TokenSource } from '../ports.ts';
import type { CallPlan, Connector, Credential, ToolCallRequest, ToolHost } from '../connectors/types.ts';
import { canonicalJson } from '../../../common/canonical-json.ts';
import { authorizationDetailsDigest, type Obo, type TokenExchanger } from '../idp/token-exchange.ts';
import type { VaultClient } from '../vault/client.ts';
import { pathAccessFor, type VaultMode } from '../vault/agent-mode.ts';
import { tierOneOnlyApprover, type Approver } from './approver.ts';

export interface BrokerOptions {
  connectors: Connector[];
  tokens: TokenSource;
  idp: TokenExchanger;
  vault: VaultClient;
  audit: AuditSink;
  /** Asked for tier-2/3 calls. Without one, `tierOneOnlyApprover` refuses them. */
  approver?: Approver;
  /** One line per call and per problem; never a token, secret or password. */
  log?: (line: string) => void;
  /** Tags every audit record as written against the local lab. */
  demo?: boolean;
  /** Notes calls in flight durably, so a core that dies mid-call closes them as aborted on restart. */
  journal?: CallJournal;
  /** Bounds on revocation: attempts of revoke-self, and how long to wait for the role to disappear. */
  revoke?: { attempts?: number; checkWithinMs?: number; timeoutMs?: number };
  /**
   * `jwt-login` (default): the OBO logs in to Vault's JWT auth for a per-call token. `agent` (Vault
   * Enterprise native agent mode): the OBO carries the Vault paths the call needs and is itself the
   * token; the lease is revoked with the same OBO.
   */
  vaultMode?: VaultMode;
  /**
   * Told when a call arrives before anyone has signed in, after it has been answered: the host brings
   * the app (or the web UI) in front of the person so they can sign in.
   */
  onSignInNeeded?: () => void;
}

/** The answer to a call made before sign-in: at once, saying what to do. */
export const SIGN_IN_FIRST =
  'You are not signed in to Countersign, so this call was not run. Sign in in the Countersign window that has just opened (or run `npx countersign open`), then ask again.';

export interface Broker extends ToolHost {
  /**
   * Runs `use` with a per-use credential for a tier-1 plan, outside any tools/call (a remote
   * upstream's tool listing): exchange → Vault → `use` → revoke in a `finally`, one `system` audit
   * record. The shape of mcp-upstream's `CredentialBroker`.
   */
  withCredential<T>(plan: CallPlan, use: (access: { obo: string; credential: Credential }) => Promise<T>, signal: AbortSignal): Promise<T>;
  /**
   * Lets every connector that can list ahead of a client do so (the user just signed in); a
   * connector that fails is logged and left to the next listing. Never throws.
   */
  warm(): Promise<void>;
  /** Waits (up to `drainMs`) for calls in flight to revoke what they hold, then closes the connectors. */
  close(drainMs?: number): Promise<void>;
}

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

function hopOutcome(error: AppError): Hop['outcome'] {
  const o = OUTCOME_BY_CODE[error.code];
  return o === 'cancelled' ? 'cancelled' : o === 'timeout' ? 'timeout' : o === 'denied' ? 'denied' : 'error';
}

/** Per-call state: hops, join keys and the secrets to scrub from anything that leaves the call. */
class CallTrace {
  readonly id = randomUUID();
  readonly hops: Hop[] = [];
  readonly keys: JoinKeys = {};
  readonly secrets = new Set<string>();

  async hop<T>(name: Hop['name'], run: () => Promise<T>, detail?: (value: T) => string | undefined): Promise<T> {
    const start = performance.now();
    try {
      const value = await run();
      const d = detail?.(value);
      this.hops.push({ name, outcome: 'ok', ms: round(performance.now() - start), ...(d ? { detail: d } : {}) });
      return value;
    } catch (error) {
      const e = AppError.from(error);
      this.hops.push({ name, outcome: hopOutcome(e), ms: round(performance.now() - start), code: e.code });
      throw e;
    }
  }

  record(name: Hop['name'], outcome: Hop['outcome'], ms: number, extra: { code?: string; detail?: string } = {}): void {
    this.hops.push({ name, outcome, ms: round(ms), ...extra });
  }

  /** The encoded forms of `secrets`, computed again only when a secret was added (they only grow). */
  #forms: { size: number; forms: string[] } | undefined;

  /** Removes every secret this call has held from a text, raw and in its common encodings. */
  scrub(text: string): string {
    if (this.#forms?.size !== this.secrets.size) this.#forms = { size: this.secrets.size, forms: [...this.secrets].filter(Boolean).flatMap(encodings) };
    let out = text;
    for (const form of this.#forms.forms) if (out.includes(form)) out = out.split(form).join('[redacted]');
    return out;
  }
}

function encodings(secret: string): string[] {
  const forms = new Set([secret, encodeURIComponent(secret), JSON.stringify(secret).slice(1, -1), Buffer.from(secret).toString('base64url')]);
  if (secret.split('.').length === 3) for (const part of secret.split('.')) if (part.length >= 16) forms.add(part);
  return [...forms];
}

const round = (ms: number): number => Math.round(ms * 100) / 100;

export function createBroker(options: BrokerOptions): Broker {
  const approver = options.approver ?? tierOneOnlyApprover;
  /** Which delegation profile the IdP decides under: on every record, so none reads as stronger than it was. */
  const delegation = options.idp.delegation ?? 'rar';
  const log = options.log ?? (() => {});
  const revokeAttempts = options.revoke?.attempts ?? 3;
  const checkWithinMs = options.revoke?.checkWithinMs ?? 2_000;
  const revokeTimeoutMs = options.revoke?.timeoutMs ?? 5_000;
  const listeners = new Set<() => void>();
  const unsubscribe = options.connectors.map((c) => c.onToolsChanged?.(() => listeners.forEach((l) => l())));
  if (!options.approver) log('broker: no approver configured; tier-2 and tier-3 calls will be refused');

  const connectorFor = (tool: string): Connector | undefined => options.connectors.find((c) => c.hasTool(tool));
  const connectorNamed = (name: string): Connector | undefined => options.connectors.find((c) => c.name === name);

  /** The journal is a durability aid: a failure to write it is logged, never a reason to fail the call. */
  function journal(write: (j: CallJournal) => void): void {
    if (!options.journal) return;
    try {
      write(options.journal);
    } catch (error) {
      log(`broker: the in-flight journal could not be written (${AppError.from(error).code})`);
    }
  }
  const noteKeys = (trace: CallTrace): void => journal((j) => j.note(trace.id, { keys: trace.keys }));

  /**
   * Records the audit store refused (a full disk): kept in order and written before the next record,
   * so each call still gets exactly one record once there is room. A core that dies first leaves
   * their calls in the journal, closed as aborted on the next start.
   */
  const unwritten: Array<{ record: AuditRecordInput; journalId: string }> = [];
  const UNWRITTEN_MAX = 10_000;
  async function appendInOrder(record: AuditRecordInput, journalId: string): Promise<void> {
    while (unwritten.length > 0) {
      const held = unwritten[0]!;
      await options.audit.append(held.record);
      unwritten.shift();
      journal((j) => j.end(held.journalId));
    }
    await options.audit.append(record);
    journal((j) => j.end(journalId));
  }

  const inFlight = new Set<Promise<unknown>>();
  function track<T>(work: Promise<T>): Promise<T> {
    inFlight.add(work);
    void work.then(
      () => inFlight.delete(work),
      () => inFlight.delete(work),
    );
    return work;
  }

  async function callTool(request: ToolCallRequest): Promise<CallToolResult> {
    const started = performance.now();
    const trace = new CallTrace();
    trace.keys.mcp_request_id = request.requestId;
    trace.keys.mcp_session_id = request.sessionId;
    const signal = request.signal;
    const user = options.tokens.user();
    // The journal is on the audit store's disk: when it cannot be written, nothing the call would
    // do could be recorded either, so the call is refused before any token is exchanged.
    let unjournaled: AppError | undefined;
    try {
      options.journal?.begin(trace.id, {
        tool: request.name,
        startedAt: new Date().toISOString(),
        user,
        client: request.client,
        keys: { ...trace.keys },
        ...(options.demo ? { demo: true } : {}),
      });
    } catch (error) {
      log(`broker: the in-flight journal could not be written (${AppError.from(error).code}); refusing the call`);
      unjournaled = new AppError('AUDIT_FAILED', 'Countersign cannot write to its audit store (is its disk full?), so it did not run this call.', { cause: error });
    }
    let plan: CallPlan | undefined;
    let result: CallToolResult | undefined;
    let failure: AppError | undefined;
    let revokeProblem: AppError | undefined;
    let approvalId: string | undefined;

    try {
      if (unjournaled) throw unjournaled;
      const connector = await trace.hop('validate', async () => {
        signal.throwIfAborted();
        const c = connectorFor(request.name);
        if (!c) throw new AppError('TOOL_UNKNOWN', `There is no tool named ${request.name}.`);
        // Nothing below can work without the person's token: answer now rather than after a listing,
        // an approval or an exchange that can only fail.
        if (!user) throw new AppError('NOT_SIGNED_IN', SIGN_IN_FIRST);
        return c;
      });
      plan = await trace.hop('classify', () => connector.plan(request.name, request.args), (p) => `tier ${p.tier}: ${p.reason}`);
      const p = plan;
      journal((j) => j.note(trace.id, { tier: p.tier, target: p.target }));
      if (p.tier === 4) {
        trace.record('approval', 'denied', 0, { code: 'POLICY_BLOCKED' });
        throw new AppError('POLICY_BLOCKED', `Countersign's policy blocks this call (tier 4: ${p.reason}); it was not sent to your identity provider.`);
      }
      let idpApproval: Hop | undefined;
      if (p.tier === 1) {
        trace.record('approval', 'skipped', 0);
      } else {
        const decision = await trace.hop(
          'approval',
          async () => {
            const d = await approver.approve(p, { requestId: request.requestId, sessionId: request.sessionId, client: request.client, user, progress: request.progress }, signal);
            signal.throwIfAborted();
            if (d.outcome === 'denied') throw new AppError('APPROVAL_DENIED', d.reason ?? 'You declined this call.');
            if (d.outcome === 'timeout') throw new AppError('APPROVAL_TIMEOUT', d.reason ?? 'Nobody answered the approval in time, so the call was refused.');
            return d;
          },
          (d) => `${VIA[d.outcome]}${d.approvalId ? ` approval=${d.approvalId}` : ''}`,
        );
        approvalId = decision.approvalId;
        const hop = trace.hops[trace.hops.length - 1]!;
        if (decision.outcome === 'cached') hop.outcome = 'cached';
        if (decision.outcome === 'idp') idpApproval = hop;
      }

      try {
        result = await runWithCredential(connector, p, request, trace, user?.sub, idpApproval);
      } catch (error) {
        // RFC 9470: the target wants a stronger or fresher login. Re-login with what it demands, then
        // one fresh exchange (never the old OBO) and one retry.
        if (!AppError.is(error, 'IDP_STEP_UP_REQUIRED') || !error.stepUp) throw error;
        const demand = error.stepUp;
        request.progress('The service asks you to sign in again with a stronger method…');
        await trace.hop('step_up', () => options.tokens.stepUp(demand, signal), () => `re-login acr_values=${demand.acrValues ?? '-'} max_age=${demand.maxAge ?? '-'}`);
        result = await runWithCredential(connector, p, request, trace, user?.sub, idpApproval);
      }
    } catch (error) {
      failure = AppError.from(error);
      // The session's deadline aborts with its own reason (a time-out, said as such); the client's cancellation with none.
      if (signal.aborted && AppError.is(signal.reason, 'TIMEOUT')) failure = signal.reason;
      else if (signal.aborted && failure.code !== 'CANCELLED') failure = new AppError('CANCELLED', 'The call was cancelled.', { cause: error });
    }
    if (approvalId !== undefined) {
      try {
        approver.settle?.(approvalId, !failure);
      } catch (error) {
        log(`broker: the approval's outcome could not be noted (${AppError.from(error).code})`);
      }
    }

    const revokeFailure = trace.hops.find((h) => (h.name === 'revoke' || h.name === 'revoke_check') && h.outcome !== 'ok' && h.outcome !== 'skipped');
    if (revokeFailure) revokeProblem = new AppError('VAULT_REVOKE_FAILED', 'The per-call credential could not be shown revoked; it expires on its own within its 60 s lifetime.');

    const durationMs = round(performance.now() - started);
    const outcome: AuditRecordInput['outcome'] = failure ? (OUTCOME_BY_CODE[failure.code] ?? 'error') : 'success';
    const errorWire = failure ? { code: failure.code, message: trace.scrub(failure.message) } : undefined;
    const record: AuditRecordInput = {
      kind: 'tool_call',
      outcome,
      user: user ? { sub: user.sub, ...(user.name ? { name: user.name } : {}), ...(user.email ? { email: user.email } : {}) } : null,
      client: request.client,
      tool: request.name,
      ...(plan ? { tier: plan.tier, target: plan.target, authorization_details: plan.authorizationDetails } : {}),
      args: request.args,
      hops: trace.hops.map((h) => (h.detail ? { ...h, detail: trace.scrub(h.detail).slice(0, 2000) } : h)),
      keys: trace.keys,
      ...(errorWire ? { error: errorWire } : {}),
      delegation,
      summary: summary(request.name, plan, outcome, revokeProblem),
      ...(options.demo ? { demo: true } : {}),
      duration_ms: durationMs,
    };
    let audited = true;
    try {
      await appendInOrder(record, trace.id);
    } catch (error) {
      audited = false;
      if (!unwritten.some((u) => u.journalId === trace.id)) unwritten.push({ record, journalId: trace.id });
      if (unwritten.length > UNWRITTEN_MAX) log(`broker: ${unwritten.length - UNWRITTEN_MAX} unwritten record(s) dropped; their calls stay in the journal`);
      unwritten.splice(0, Math.max(0, unwritten.length - UNWRITTEN_MAX));
      log(`broker: audit append failed for request ${String(request.requestId)} (${AppError.from(error, 'AUDIT_FAILED').code}); ${unwritten.length} record(s) held until the store takes them`);
    }
    log(
      `broker: ${request.name} tier=${plan?.tier ?? '-'} outcome=${outcome}${failure ? ` code=${failure.code}` : ''} jti=${trace.keys.obo_jti ?? '-'} role=${trace.keys.db_role ?? '-'} ms=${durationMs}`,
    );
    if (failure?.code === 'NOT_SIGNED_IN') options.onSignInNeeded?.();
    if (failure?.code === 'TOOL_UNKNOWN') throw failure; // a JSON-RPC error (-32602) at the MCP layer
    if (!audited) {
      return errorResult(
        new AppError('AUDIT_FAILED', failure ? `${errorWire!.message} The audit record could not be written either.` : 'The call ran, but its audit record could not be written; check the audit store.'),
      );
    }
    if (failure) return errorResult(new AppError(failure.code, errorWire!.message));
    return result!;
  }

  async function runWithCredential(
    connector: Connector,
    plan: CallPlan,
    request: ToolCallRequest,
    trace: CallTrace,
    expectedSub: string | undefined,
    idpApproval: Hop | undefined,
  ): Promise<CallToolResult> {
    const ctx = { signal: request.signal, progress: request.progress, expectedSub, ...(idpApproval ? { idpApproval } : {}) };
    return withTracedCredential(plan, trace, ctx, connector, (obo, cred) =>
      trace.hop('execute', () =>
        connector.execute({
          plan,
          args: request.args,
          obo: obo.token,
          oboJti: obo.jti,
          credential: cred,
          signal: request.signal,
          progress: request.progress,
          note: (keys) => {
            if (keys.db_role) trace.keys.db_role = keys.db_role;
            if (keys.upstream_request_id) trace.keys.upstream_request_id = keys.upstream_request_id;
          },
        }),
      ),
    );
  }

  /**
   * Exchange → Vault login and credential (when the plan asks for one) → `use` → revoke in a
   * `finally`, whatever `use` did. Every hop lands in `trace`.
   */
  async function withTracedCredential<T>(
    plan: CallPlan,
    trace: CallTrace,
    ctx: {
      signal: AbortSignal;
      progress: (message: string) => void;
      expectedSub: string | undefined;
      /** The approval hop of a call whose approval the IdP carries: the OBO must prove it. */
      idpApproval?: Hop;
    },
    connector: Connector | undefined,
    use: (obo: Obo, credential: Credential) => Promise<T>,
  ): Promise<T> {
    const { signal, expectedSub } = ctx;
    let vaultToken: string | undefined;
    let credential: Credential | undefined;
    let agentLease: { obo: string; leaseId: string; ttl: number } | undefined;
    const agentMode = options.vaultMode === 'agent' && plan.credential.kind !== 'obo';
    // Agent mode: the call's own entries plus the Vault paths it needs, all decided by the IdP in one OBO.
    const asked = agentMode ? [...plan.authorizationDetails, ...pathAccessFor(plan.credential)] : plan.authorizationDetails;
    try {
      const exchanged = trace.hop(
        'exchange',
        async () => {
          const subjectToken = await options.tokens.getAccessToken(signal);
          trace.secrets.add(subjectToken);
          const o = await options.idp.exchange({
            subjectToken,
            authorizationDetails: asked,
            ...(plan.audience ? { audience: plan.audience } : {}),
            ...(plan.resource ? { resource: plan.resource } : {}),
            ...(plan.credential.kind !== 'obo' ? { credential: plan.credential.role } : {}),
            dpopKeyPair: options.tokens.dpopKeyPair(),
            ...(expectedSub ? { expectedSub } : {}),
            approvalMessage: `Countersign: ${plan.tool} on ${plan.target} (${plan.reason})`,
            signal,
            onProgress: ctx.progress,
          });
          trace.secrets.add(o.token);
          return o;
        },
        (o: Obo) => `${delegationDetail(o)} vault_role=${o.vaultRole}${o.acr ? ` acr=${o.acr}` : ''}${o.steppedUp ? ' stepped_up' : ''}${longLifetime(o)}`,
      );
      const obo = ctx.idpApproval ? await approvedThroughIdp(exchanged, plan, ctx.idpApproval) : await exchanged;
      trace.keys.obo_jti = obo.jti;
      noteKeys(trace);
      if (obo.steppedUp) trace.record('step_up', 'ok', obo.stepUpMs ?? 0, { detail: `amr=${(obo.amr ?? []).join(',')}` });
      if (ctx.idpApproval) requireIdpApproval(obo, plan, asked, ctx.idpApproval);

      const c = plan.credential;
      if (c.kind === 'obo') {
        credential = { kind: 'obo' };
      } else if (agentMode) {
        // No login: the OBO goes to the credential's path as X-Vault-Token. Not cancelled mid-flight either.
        if (c.kind === 'vault-database') {
          const creds = await trace.hop(
            'vault_creds',
            async () => {
              const r = await options.vault.databaseCreds(obo.token, c.dbMount, c.dbRole);
              trace.secrets.add(r.password);
              credential = { kind: 'database', username: r.username, password: r.password };
              agentLease = { obo: obo.token, leaseId: r.leaseId, ttl: r.leaseDuration };
              return r;
            },
            (r) => `request_id=${r.requestId} ttl=${r.leaseDuration}s mode=agent jwt_unique_id=${obo.jti}`,
          );
          Object.assign(trace.keys, { vault_request_id: creds.requestId, lease_id: creds.leaseId, db_role: creds.username });
          noteKeys(trace);
        } else {
          credential = await apiKeyFrom(c, obo.token, trace, ` mode=agent jwt_unique_id=${obo.jti}`);
        }
        signal.throwIfAborted();
      } else {
        // Minting requests are not cancelled mid-flight: what Vault mints must come back to be revoked.
        const login = await trace.hop(
          'vault_login',
          async () => {
            const l = await options.vault.loginJwt(c.authMount, obo.vaultRole, obo.token);
            trace.secrets.add(l.token);
            vaultToken = l.token;
            journal((j) => j.holdCredential?.(trace.id, l.token));
            return l;
          },
          (l) => `request_id=${l.requestId} role=${obo.vaultRole}`,
        );
        trace.keys.vault_accessor = login.accessor;
        noteKeys(trace);
        trace.keys.vault_request_id = login.requestId;
        signal.throwIfAborted();
        if (c.kind === 'vault-database') {
          const dbRole = c.role === obo.vaultRole ? c.dbRole : obo.vaultRole;
          const creds = await trace.hop(
            'vault_creds',
            async () => {
              const r = await options.vault.databaseCreds(login.token, c.dbMount, dbRole);
              trace.secrets.add(r.password);
              credential = { kind: 'database', username: r.username, password: r.password };
              return r;
            },
            (r) => `request_id=${r.requestId} ttl=${r.leaseDuration}s`,
          );
          trace.keys.vault_request_id = creds.requestId;
          trace.keys.lease_id = creds.leaseId;
          trace.keys.db_role = creds.username;
          noteKeys(trace);
        } else {
          credential = await apiKeyFrom(c, login.token, trace, '');
        }
        signal.throwIfAborted();
      }

      return await use(obo, credential!);
    } finally {
      if (agentLease) await revokeLeaseWithObo(trace, agentLease);
      else await revoke(trace, vaultToken);
      await checkGone(connector, trace, credential, vaultToken !== undefined || agentLease !== undefined);
    }
  }

  async function apiKeyFrom(c: Extract<CallPlan['credential'], { kind: 'vault-kv' }>, token: string, trace: CallTrace, extra: string): Promise<Credential> {
    const secret = await trace.hop('vault_creds', () => options.vault.kvRead(token, c.kvMount, c.path), (r) => `request_id=${r.requestId}${extra}`);
    trace.keys.vault_request_id = secret.requestId;
    const value = secret.data[c.field];
    if (typeof value !== 'string' || value.length === 0) throw new AppError('VAULT_BAD_RESPONSE', `The secret at ${c.path} has no ${c.field} field.`);
    trace.secrets.add(value);
    return { kind: 'api-key', apiKey: value };
  }

  /**
   * Agent mode: `sys/leases/revoke` with the same OBO (its RAR allows this role's leases only), retried
   * with a bound. A refusal is final (the OBO expired, or Vault does not allow it): the lease then
   * expires at its TTL, and the hop says so.
   */
  async function revokeLeaseWithObo(trace: CallTrace, lease: { obo: string; leaseId: string; ttl: number }): Promise<void> {
    const start = performance.now();
    let lastCode: string | undefined;
    let attempts = 0;
    while (attempts < revokeAttempts) {
      if (attempts > 0) await delay(100 * 3 ** (attempts - 1));
      attempts += 1;
      try {
        await options.vault.revokeLease(lease.obo, lease.leaseId, AbortSignal.timeout(revokeTimeoutMs));
        trace.record('revoke', 'ok', performance.now() - start, { detail: `mode=agent lease revoked with the OBO, attempts=${attempts}` });
        return;
      } catch (error) {
        lastCode = AppError.from(error).code;
        if (lastCode === 'VAULT_PERMISSION_DENIED') break;
      }
    }
    trace.record('revoke', 'error', performance.now() - start, {
      code: lastCode ?? 'VAULT_REVOKE_FAILED',
      detail: `mode=agent lease not revoked (${lastCode}), attempts=${attempts}: it expires at its TTL, within ${lease.ttl} s`,
    });
    log(`broker: lease revocation with the OBO failed (${lastCode}); the lease expires within ${lease.ttl} s`);
  }

  /**
   * The connectors' `CredentialBroker` (mcp-upstream's tool listing, which happens outside any
   * tools/call): the same exchange, Vault and revocation legs as a call, for a tier-1 plan only, with
   * one `system` audit record carrying every hop and join key. Approvals are never skipped through
   * here: a plan above tier 1 is refused before any token is read.
   */
  async function withCredential<T>(plan: CallPlan, use: (access: { obo: string; credential: Credential }) => Promise<T>, signal: AbortSignal): Promise<T> {
    const started = performance.now();
    const trace = new CallTrace();
    const user = options.tokens.user();
    let failure: AppError | undefined;
    let value: T | undefined;
    try {
      if (plan.tier !== 1) {
        trace.record('approval', 'denied', 0, { code: 'POLICY_BLOCKED' });
        throw new AppError('POLICY_BLOCKED', `Countersign obtains credentials outside a tool call only for tier-1 work; ${plan.tool} is tier ${plan.tier}.`);
      }
      trace.record('approval', 'skipped', 0);
      value = await withTracedCredential(plan, trace, { signal, progress: () => {}, expectedSub: user?.sub }, connectorNamed(plan.connector), (obo, credential) =>
        trace.hop('execute', () => use({ obo: obo.token, credential }), () => plan.reason),
      );
    } catch (error) {
      failure = AppError.from(error);
      if (signal.aborted && failure.code !== 'CANCELLED' && failure.code !== 'TIMEOUT') {
        failure = new AppError('CANCELLED', 'The request was cancelled.', { cause: error });
      }
    }
    const outcome: AuditRecordInput['outcome'] = failure ? (OUTCOME_BY_CODE[failure.code] ?? 'error') : 'success';
    const errorWire = failure ? { code: failure.code, message: trace.scrub(failure.message) } : undefined;
    const durationMs = round(performance.now() - started);
    try {
      await options.audit.append({
        kind: 'system',
        outcome,
        user: user ? { sub: user.sub, ...(user.name ? { name: user.name } : {}), ...(user.email ? { email: user.email } : {}) } : null,
        tool: plan.tool,
        tier: plan.tier,
        target: plan.target,
        authorization_details: plan.authorizationDetails,
        hops: trace.hops.map((h) => (h.detail ? { ...h, detail: trace.scrub(h.detail).slice(0, 2000) } : h)),
        keys: trace.keys,
        ...(errorWire ? { error: errorWire } : {}),
        delegation,
        summary: `${plan.reason} on ${plan.target} → ${outcome}`.slice(0, 500),
        ...(options.demo ? { demo: true } : {}),
        duration_ms: durationMs,
      });
    } catch (error) {
      log(`broker: audit append failed for ${plan.tool} (${AppError.from(error, 'AUDIT_FAILED').code})`);
      if (!failure) failure = new AppError('AUDIT_FAILED', `Countersign could not record ${plan.reason}, so it does not use the result.`);
    }
    log(`broker: ${plan.tool} (${plan.reason}) outcome=${outcome}${failure ? ` code=${failure.code}` : ''} jti=${trace.keys.obo_jti ?? '-'} ms=${durationMs}`);
    if (failure) throw new AppError(failure.code, errorWire?.message ?? failure.message, failure.stepUp ? { stepUp: failure.stepUp } : undefined);
    return value as T;
  }

  /** revoke-self (leases go with the token), retried with a bound. */
  async function revoke(trace: CallTrace, vaultToken: string | undefined): Promise<void> {
    if (!vaultToken) return;
    const start = performance.now();
    let revoked = false;
    let alreadyGone = false;
    let lastCode: string | undefined;
    let attempts = 0;
    while (attempts < revokeAttempts && !revoked) {
      if (attempts > 0) await delay(100 * 3 ** (attempts - 1));
      attempts += 1;
      try {
        await options.vault.revokeSelf(vaultToken, AbortSignal.timeout(revokeTimeoutMs));
        revoked = true;
      } catch (error) {
        const e = AppError.from(error);
        lastCode = e.code;
        // 403: the token is no longer valid (revoked by an attempt whose answer failed, or expired);
        // Vault revokes its leases with it, which the role check below proves or disproves.
        if (e.code === 'VAULT_PERMISSION_DENIED') {
          revoked = true;
          alreadyGone = true;
        }
      }
    }
    trace.record('revoke', revoked ? 'ok' : 'error', performance.now() - start, {
      ...(revoked ? {} : { code: lastCode ?? 'VAULT_REVOKE_FAILED' }),
      detail: `attempts=${attempts}${alreadyGone ? ' token already invalid' : ''}`,
    });
    if (!revoked) log(`broker: revoke-self failed (${lastCode}); the credential expires at its TTL`);
  }

  /** Proves at the target that the per-call credential is dead (the database role is gone). */
  async function checkGone(connector: Connector | undefined, trace: CallTrace, credential: Credential | undefined, minted: boolean): Promise<void> {
    if (!minted || !credential || credential.kind !== 'database' || !connector?.verifyRevoked) return;
    const checkStart = performance.now();
    const deadline = Date.now() + checkWithinMs;
    let state: 'gone' | 'present' | 'unknown';
    let checks = 0;
    while (true) {
      checks += 1;
      state = await connector.verifyRevoked(credential, AbortSignal.timeout(revokeTimeoutMs)).catch(() => 'unknown' as const);
      if (state === 'gone' || Date.now() >= deadline) break;
      await delay(Math.min(50 * checks, 250));
    }
    trace.record('revoke_check', state === 'gone' ? 'ok' : 'error', performance.now() - checkStart, {
      ...(state === 'gone' ? {} : { code: 'VAULT_REVOKE_FAILED' }),
      detail: `role ${state} after ${checks} check(s)`,
    });
    if (state !== 'gone') log(`broker: database role ${credential.username} still ${state} after revocation`);
  }

  return {
    /**
     * Every connector's tools. A connector that cannot list (an upstream down, the user not signed
     * in yet, the IdP refusing the listing) is left out of this answer rather than taking the others
     * with it; its failure is logged (and, for upstreams, recorded by `withCredential`).
     */
    async listTools(): Promise<Tool[]> {
      const lists = await Promise.allSettled(options.connectors.map((c) => c.listTools()));
      return lists.flatMap((r, i) => {
        if (r.status === 'fulfilled') return r.value;
        log(`broker: the tools of ${options.connectors[i]?.name ?? '?'} are left out of this list (${AppError.from(r.reason).code})`);
        return [];
      });
    },
    callTool: (request) => track(callTool(request)),
    async warm() {
      await Promise.all(
        options.connectors.map((c) =>
          c.warm?.().catch((error: unknown) => log(`broker: ${c.name} could not list its tools after sign-in (${AppError.from(error).code})`)),
        ),
      );
    },
    withCredential: ((plan, use, signal) => track(withCredential(plan, use, signal))) as typeof withCredential,
    onToolsChanged(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    /**
     * Quitting drains: calls still in flight (their sessions have been closed, so their signals have
     * fired) finish their own `finally`, which revokes what they hold and writes their record, before
     * the connectors, Vault client and audit store behind them go away.
     */
    async close(drainMs = 15_000) {
      for (const u of unsubscribe) u?.();
      if (inFlight.size > 0) {
        log(`broker: waiting for ${inFlight.size} call(s) in flight to revoke what they hold`);
        await Promise.race([Promise.allSettled([...inFlight]), delay(drainMs)]);
      }
      await Promise.all(options.connectors.map((c) => c.close?.()));
    },
  };
}

/** The exchange hop's account of who decided: the RAR itself, or a scope standing for the credential. */
/** The OBO's lifetime when it is over the 60 s norm (idp.allowLongLivedOboUpToSeconds), so the record shows the weaker setting ran. */
function longLifetime(o: Obo): string {
  const s = o.exp - o.iat;
  return s > 60 ? ` lifetime=${s}s (over 60 s: idp.allowLongLivedOboUpToSeconds)` : '';
}

function delegationDetail(o: Obo): string {
  if (o.delegation === 'scopes') return `profile=scopes scope=${o.scope ?? '-'} (the identity provider decided at scope level; the RAR is recorded, not sent)`;
  return 'profile=rar';
}

/** How the approval hop's detail names the way a call was approved. */
const VIA: Record<'approved' | 'cached' | 'idp' | 'denied' | 'timeout', string> = {
  approved: 'via=local-prompt',
  cached: 'via=cached',
  idp: 'via=idp-push',
  denied: 'via=local-prompt',
  timeout: 'via=local-prompt',
};

/**
 * The exchange of a call whose approval the IdP carries: the person's answer on the push is the
 * approval, so a refusal or silence there is the person's denial or time-out, said as such.
 */
async function approvedThroughIdp(exchanged: Promise<Obo>, plan: CallPlan, hop: Hop): Promise<Obo> {
  try {
    return await exchanged;
  } catch (error) {
    const e = AppError.from(error);
    if (e.code === 'IDP_STEP_UP_DENIED') {
      Object.assign(hop, { outcome: 'denied', code: 'APPROVAL_DENIED', detail: 'via=idp-push denied on the push' });
      throw new AppError('APPROVAL_DENIED', `You denied ${plan.tool} on ${plan.target} (the approval your identity provider pushed to your phone).`, { cause: e });
    }
    if (e.code === 'IDP_STEP_UP_TIMEOUT') {
      Object.assign(hop, { outcome: 'timeout', code: 'APPROVAL_TIMEOUT', detail: 'via=idp-push not answered' });
      throw new AppError('APPROVAL_TIMEOUT', `Nobody approved ${plan.tool} on your phone in time (your identity provider's push), so it was not run.`, { cause: e });
    }
    Object.assign(hop, { outcome: hopOutcome(e), code: e.code, detail: 'via=idp-push not completed' });
    throw e;
  }
}

/**
 * Fail closed (approvals.tier3 = idp-when-offered): no local prompt was shown, so the OBO must prove a
 * person approved this very call through the IdP: obtained through the push (the Verify-style second
 * leg), the IdP's signed `amr` naming the push, and the granted RAR exactly the one whose digest the
 * push carried. Anything less is refused before Vault is asked for a credential.
 */
function requireIdpApproval(obo: Obo, plan: CallPlan, asked: CallPlan['authorizationDetails'], hop: Hop): void {
  const digest = authorizationDetailsDigest(asked);
  const pushed = obo.steppedUp && (obo.amr ?? []).includes('push');
  const sameCall = canonicalJson(obo.authorizationDetails) === canonicalJson(asked);
  if (pushed && sameCall) {
    Object.assign(hop, { outcome: 'ok', detail: `via=idp-push amr=${(obo.amr ?? []).join(',')} push_digest=${digest}` });
    return;
  }
  const missing = !pushed ? 'without a push approval' : 'for authorization details other than the ones the push approved';
  Object.assign(hop, { outcome: 'denied', code: 'APPROVAL_NOT_PROVEN', detail: `via=idp-push refused: the OBO was issued ${missing} (jti=${obo.jti})` });
  throw new AppError(
    'APPROVAL_NOT_PROVEN',
    `Your identity provider issued the token for ${plan.tool} on ${plan.target} ${missing}, but Countersign relies on it to ask you for tier-3 calls (approvals.tier3 is idp-when-offered), so the call was refused. Check the identity provider's step-up policy, or set approvals.tier3 to local.`,
  );
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function summary(tool: string, plan: CallPlan | undefined, outcome: string, revokeProblem: AppError | undefined): string {
  const base = plan ? `${tool} on ${plan.target}: ${plan.reason} → ${outcome}` : `${tool} → ${outcome}`;
  return (revokeProblem ? `${base}; revocation not confirmed` : base).slice(0, 500);
}

/** MCP tool execution error (STANDARDS.md §6): `isError` with a reason a person can act on. */
export function errorResult(error: AppError): CallToolResult {
  return { isError: true, content: [{ type: 'text', text: `${error.message} [${error.code}]` }] };
}
