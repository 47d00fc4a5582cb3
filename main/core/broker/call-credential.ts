/**
 * The credential of one call, from the exchange to its revocation (docs/call-chain.md, hops 6, 7 and 9):
 * the OBO for exactly this call (RFC 8693 + RFC 9396), then Vault's credential for it (JWT login →
 * per-call token → credential; or, in agent mode, the OBO itself presented to the credential's path),
 * then, when the holder's scope ends, revocation and a check at the target that the credential is dead.
 *
 * Held with `await using`, so revocation is not a `finally` someone must remember: whatever `obtain()`
 * minted before it failed, and whatever the call did with it, is revoked when the scope is left.
 */
import { performance } from 'node:perf_hooks';
import { AppError } from '../../../common/errors.ts';
import type { Hop } from '../../../common/audit-record.ts';
import type { TokenSource } from '../ports.ts';
import type { CallPlan, Connector, Credential } from '../connectors/types.ts';
import type { Obo, TokenExchanger } from '../idp/token-exchange.ts';
import type { VaultClient } from '../vault/client.ts';
import { pathAccessFor, type VaultMode } from '../vault/agent-mode.ts';
import { delay, type CallTrace } from './call-trace.ts';
import { TimeLimit } from '../time-limit.ts';
import { approvedThroughIdp, requireIdpApproval } from './idp-approval.ts';

export interface CredentialOptions {
  tokens: TokenSource;
  idp: TokenExchanger;
  vault: VaultClient;
  /**
   * `jwt-login` (default): the OBO logs in to Vault's JWT auth for a per-call token. `agent` (Vault
   * Enterprise native agent mode): the OBO carries the Vault paths the call needs and is itself the
   * token; the lease is revoked with the same OBO.
   */
  vaultMode?: VaultMode;
  /** Bounds on revocation: attempts of revoke-self, and how long to wait for the role to disappear. */
  revoke?: { attempts?: number; checkWithinMs?: number; timeoutMs?: number };
  /** One line per problem; never a token, secret or password. */
  log?: (line: string) => void;
}

/** The options with their defaults, resolved once. */
export interface CredentialSettings {
  tokens: TokenSource;
  idp: TokenExchanger;
  vault: VaultClient;
  vaultMode: VaultMode;
  attempts: number;
  checkWithinMs: number;
  timeoutMs: number;
  log: (line: string) => void;
}

export function credentialSettings(o: CredentialOptions): CredentialSettings {
  return {
    tokens: o.tokens,
    idp: o.idp,
    vault: o.vault,
    vaultMode: o.vaultMode ?? 'jwt-login',
    attempts: o.revoke?.attempts ?? 3,
    checkWithinMs: o.revoke?.checkWithinMs ?? 2_000,
    timeoutMs: o.revoke?.timeoutMs ?? 5_000,
    log: o.log ?? (() => {}),
  };
}

export interface CredentialContext {
  signal: AbortSignal;
  progress: (message: string) => void;
  /** The signed-in user: the OBO must name them. */
  expectedSub: string | undefined;
  /** The approval hop of a call whose approval the IdP carries: the OBO must prove it. */
  idpApproval?: Hop;
  /** The connector that can prove at its target that a database credential is dead. */
  target?: Pick<Connector, 'verifyRevoked'>;
}

/** What a call holds while its scope lasts. */
export interface HeldCredential {
  obo: Obo;
  credential: Credential;
}

export class CallCredential implements AsyncDisposable {
  readonly #s: CredentialSettings;
  readonly #plan: CallPlan;
  readonly #trace: CallTrace;
  readonly #ctx: CredentialContext;
  readonly #agentMode: boolean;
  #vaultToken: string | undefined;
  #lease: { obo: string; leaseId: string; ttl: number } | undefined;
  #credential: Credential | undefined;
  #released = false;

  constructor(settings: CredentialSettings, plan: CallPlan, trace: CallTrace, ctx: CredentialContext) {
    this.#s = settings;
    this.#plan = plan;
    this.#trace = trace;
    this.#ctx = ctx;
    this.#agentMode = settings.vaultMode === 'agent' && plan.credential.kind !== 'obo';
  }

  /** The per-call database role from Vault (`token`: a Vault token, or the OBO in agent mode), with its join keys noted. */
  async #databaseCreds(
    token: string,
    mount: string,
    role: string,
    detail: string,
    hold?: (creds: { leaseId: string; leaseDuration: number }) => void,
  ): Promise<void> {
    const trace = this.#trace;
    // In agent mode nothing but the lease's id revokes it (there is no Vault token whose revocation
    // takes its leases), so a lease that comes back after the call stopped waiting is revoked then.
    const late = this.#agentMode
      ? (c: { leaseId: string }) => this.#revokeLate(`lease ${c.leaseId}`, (signal) => this.#s.vault.revokeLease(token, c.leaseId, signal))
      : undefined;
    const r = await trace.hop(
      'vault_creds',
      async () => {
        const creds = await this.#s.vault.databaseCreds(token, mount, role, undefined, late);
        trace.secrets.add(creds.password);
        this.#credential = { kind: 'database', username: creds.username, password: creds.password };
        hold?.(creds);
        return creds;
      },
      (x) => `request_id=${x.requestId} ttl=${x.leaseDuration}s${detail}`,
    );
    Object.assign(trace.keys, { vault_request_id: r.requestId, lease_id: r.leaseId, db_role: r.username });
    // In agent mode the lease is what a restarted core must revoke: noted at once. Otherwise the Vault
    // token, noted at the login, revokes it; these keys only join the record.
    if (this.#agentMode) trace.noteKeys();
    else trace.noteKeysSoon();
  }

  /** Exchange → Vault (when the plan asks for a credential). Every hop lands in the trace. */
  async obtain(): Promise<HeldCredential> {
    const { signal } = this.#ctx;
    const trace = this.#trace;
    const obo = await this.#exchange();
    const c = this.#plan.credential;
    if (c.kind === 'obo') {
      this.#credential = { kind: 'obo' };
    } else if (this.#agentMode) {
      // No login: the OBO goes to the credential's path as X-Vault-Token. Not cancelled mid-flight either.
      if (c.kind === 'vault-database') {
        // The lease is held for revocation the moment Vault hands it over.
        await this.#databaseCreds(
          obo.token,
          c.dbMount,
          c.dbRole,
          ` mode=agent jwt_unique_id=${obo.jti}`,
          (r) => {
            this.#lease = { obo: obo.token, leaseId: r.leaseId, ttl: r.leaseDuration };
          },
        );
      } else {
        this.#credential = await this.#apiKey(c, obo.token, ` mode=agent jwt_unique_id=${obo.jti}`);
      }
      signal.throwIfAborted();
    } else {
      // Minting requests are not cancelled mid-flight: what Vault mints must come back to be revoked.
      const login = await trace.hop(
        'vault_login',
        async () => {
          // A token that comes back after the call stopped waiting is revoked then: it could mint.
          const l = await this.#s.vault.loginJwt(c.authMount, obo.vaultRole, obo.token, undefined, (late) =>
            this.#revokeLate(`the Vault token (accessor ${late.accessor})`, (signal) => this.#s.vault.revokeSelf(late.token, signal)),
          );
          trace.secrets.add(l.token);
          this.#vaultToken = l.token;
          // The token (sealed) and its accessor, noted in one write.
          trace.keys.vault_accessor = l.accessor;
          trace.journal((j) => (j.holdCredential ? j.holdCredential(trace.id, l.token, trace.keys) : j.note(trace.id, { keys: trace.keys })));
          return l;
        },
        (l) => `request_id=${l.requestId} role=${obo.vaultRole}`,
      );
      trace.keys.vault_request_id = login.requestId;
      signal.throwIfAborted();
      if (c.kind === 'vault-database') {
        const dbRole = c.role === obo.vaultRole ? c.dbRole : obo.vaultRole;
        await this.#databaseCreds(login.token, c.dbMount, dbRole, '');
      } else {
        this.#credential = await this.#apiKey(c, login.token, '');
      }
      signal.throwIfAborted();
    }
    return { obo, credential: this.#credential! };
  }

  /** Revokes whatever was minted (once), then proves at the target that it is dead. Never throws. */
  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#released) return;
    this.#released = true;
    if (this.#lease) await this.#revokeLeaseWithObo(this.#lease);
    else if (this.#vaultToken) await this.#revokeSelf(this.#vaultToken);
    if (this.#vaultToken !== undefined || this.#lease !== undefined) await this.#checkGone();
  }

  async #exchange(): Promise<Obo> {
    const { signal, expectedSub, idpApproval } = this.#ctx;
    const plan = this.#plan;
    const trace = this.#trace;
    // Agent mode: the call's own entries plus the Vault paths it needs, all decided by the IdP in one OBO.
    const asked = this.#agentMode
      ? [...plan.authorizationDetails, ...pathAccessFor(plan.credential)]
      : plan.authorizationDetails;
    const exchanged = trace.hop(
      'exchange',
      async () => {
        const subjectToken = await this.#s.tokens.getAccessToken(signal);
        trace.secrets.add(subjectToken);
        const o = await this.#s.idp.exchange({
          subjectToken,
          authorizationDetails: asked,
          ...(plan.audience ? { audience: plan.audience } : {}),
          ...(plan.resource ? { resource: plan.resource } : {}),
          ...(plan.credential.kind !== 'obo' ? { credential: plan.credential.role } : {}),
          dpopKeyPair: this.#s.tokens.dpopKeyPair(),
          ...(expectedSub ? { expectedSub } : {}),
          approvalMessage: `Countersign: ${plan.tool} on ${plan.target} (${plan.reason})`,
          signal,
          onProgress: this.#ctx.progress,
        });
        trace.secrets.add(o.token);
        return o;
      },
      (o: Obo) =>
        `${delegationDetail(o)} vault_role=${o.vaultRole}${o.acr ? ` acr=${o.acr}` : ''}${o.steppedUp ? ' stepped_up' : ''}${longLifetime(o)}`,
    );
    const obo = idpApproval ? await approvedThroughIdp(exchanged, plan, idpApproval) : await exchanged;
    trace.keys.obo_jti = obo.jti;
    trace.noteKeysSoon();
    if (obo.steppedUp)
      trace.record('step_up', 'ok', obo.stepUpMs ?? 0, { detail: `amr=${(obo.amr ?? []).join(',')}` });
    if (idpApproval) requireIdpApproval(obo, plan, asked, idpApproval);
    return obo;
  }

  async #apiKey(
    c: Extract<CallPlan['credential'], { kind: 'vault-kv' }>,
    token: string,
    extra: string,
  ): Promise<Credential> {
    const trace = this.#trace;
    const secret = await trace.hop(
      'vault_creds',
      () => this.#s.vault.kvRead(token, c.kvMount, c.path),
      (r) => `request_id=${r.requestId}${extra}`,
    );
    trace.keys.vault_request_id = secret.requestId;
    const value = secret.data[c.field];
    if (typeof value !== 'string' || value.length === 0)
      throw new AppError('VAULT_BAD_RESPONSE', `The secret at ${c.path} has no ${c.field} field.`);
    trace.secrets.add(value);
    return { kind: 'api-key', apiKey: value };
  }

  /** revoke-self (leases go with the token), retried with a bound. */
  async #revokeSelf(vaultToken: string): Promise<void> {
    const start = performance.now();
    let revoked = false;
    let alreadyGone = false;
    let lastCode: string | undefined;
    let attempts = 0;
    while (attempts < this.#s.attempts && !revoked) {
      if (attempts > 0) await delay(100 * 3 ** (attempts - 1));
      attempts += 1;
      using limit = new TimeLimit(this.#s.timeoutMs);
      try {
        await this.#s.vault.revokeSelf(vaultToken, limit.signal);
        revoked = true;
      } catch (error) {
        lastCode = AppError.from(error).code;
        // 403: the token is no longer valid (revoked by an attempt whose answer failed, or expired);
        // Vault revokes its leases with it, which the role check proves or disproves.
        if (lastCode === 'VAULT_PERMISSION_DENIED') revoked = alreadyGone = true;
      }
    }
    this.#trace.record('revoke', revoked ? 'ok' : 'error', performance.now() - start, {
      ...(revoked ? {} : { code: lastCode ?? 'VAULT_REVOKE_FAILED' }),
      detail: `attempts=${attempts}${alreadyGone ? ' token already invalid' : ''}`,
    });
    if (!revoked) this.#s.log(`broker: revoke-self failed (${lastCode}); the credential expires at its TTL`);
  }

  /**
   * Agent mode: `sys/leases/revoke` with the same OBO (its RAR allows this role's leases only), retried
   * with a bound. A refusal is final (the OBO expired, or Vault does not allow it): the lease then
   * expires at its TTL, and the hop says so.
   */
  async #revokeLeaseWithObo(lease: { obo: string; leaseId: string; ttl: number }): Promise<void> {
    const start = performance.now();
    let lastCode: string | undefined;
    let attempts = 0;
    while (attempts < this.#s.attempts) {
      if (attempts > 0) await delay(100 * 3 ** (attempts - 1));
      attempts += 1;
      using limit = new TimeLimit(this.#s.timeoutMs);
      try {
        await this.#s.vault.revokeLease(lease.obo, lease.leaseId, limit.signal);
        this.#trace.record('revoke', 'ok', performance.now() - start, {
          detail: `mode=agent lease revoked with the OBO, attempts=${attempts}`,
        });
        return;
      } catch (error) {
        lastCode = AppError.from(error).code;
        if (lastCode === 'VAULT_PERMISSION_DENIED') break;
      }
    }
    this.#trace.record('revoke', 'error', performance.now() - start, {
      code: lastCode ?? 'VAULT_REVOKE_FAILED',
      detail: `mode=agent lease not revoked (${lastCode}), attempts=${attempts}: it expires at its TTL, within ${lease.ttl} s`,
    });
    this.#s.log(
      `broker: lease revocation with the OBO failed (${lastCode}); the lease expires within ${lease.ttl} s`,
    );
  }

  /**
   * Revokes what Vault minted after the call stopped waiting for it, with the call's bounded retries.
   * The call's record may be written by then, so the outcome goes to the log.
   */
  #revokeLate(what: string, revoke: (signal: AbortSignal) => Promise<unknown>): void {
    void (async () => {
      let lastCode: string | undefined;
      for (let attempt = 0; attempt < this.#s.attempts; attempt++) {
        if (attempt > 0) await delay(100 * 3 ** (attempt - 1));
        using limit = new TimeLimit(this.#s.timeoutMs);
        try {
          await revoke(limit.signal);
          this.#s.log(`broker: ${what}, minted after the call stopped waiting for it, was revoked`);
          return;
        } catch (error) {
          lastCode = AppError.from(error).code;
        }
      }
      this.#s.log(`broker: ${what}, minted after the call stopped waiting for it, was not revoked (${lastCode}); it expires at its TTL`);
    })();
  }

  /** Proves at the target that a database credential is dead (the role is gone), within a bound. */
  async #checkGone(): Promise<void> {
    const credential = this.#credential;
    const target = this.#ctx.target;
    if (!credential || credential.kind !== 'database' || !target?.verifyRevoked) return;
    const checkStart = performance.now();
    const deadline = Date.now() + this.#s.checkWithinMs;
    let state: 'gone' | 'present' | 'unknown';
    let checks = 0;
    while (true) {
      checks += 1;
      // Each login ends with the bound, not its own time-out: a PostgreSQL that never answers the
      // login would otherwise hold the call's answer for the whole of it.
      using limit = new TimeLimit(Math.max(1, Math.min(this.#s.timeoutMs, deadline - Date.now())));
      state = await target.verifyRevoked(credential, limit.signal).catch(() => 'unknown' as const);
      const left = deadline - Date.now();
      if (state === 'gone' || left <= 0) break;
      await delay(Math.min(50 * checks, 250, left));
    }
    this.#trace.record('revoke_check', state === 'gone' ? 'ok' : 'error', performance.now() - checkStart, {
      ...(state === 'gone' ? {} : { code: 'VAULT_REVOKE_FAILED' }),
      detail: `role ${state} after ${checks} check(s)`,
    });
    if (state !== 'gone')
      this.#s.log(`broker: database role ${credential.username} still ${state} after revocation`);
  }
}

/** The OBO's lifetime when it is over the 60 s norm (idp.allowLongLivedOboUpToSeconds), so the record shows the weaker setting ran. */
function longLifetime(o: Obo): string {
  const s = o.exp - o.iat;
  return s > 60 ? ` lifetime=${s}s (over 60 s: idp.allowLongLivedOboUpToSeconds)` : '';
}

/** The exchange hop's account of who decided: the RAR itself, or a scope standing for the credential. */
function delegationDetail(o: Obo): string {
  if (o.delegation === 'scopes')
    return `profile=scopes scope=${o.scope ?? '-'} (the identity provider decided at scope level; the RAR is recorded, not sent)`;
  return 'profile=rar';
}
