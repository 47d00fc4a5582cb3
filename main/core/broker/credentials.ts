/**
 * Where per-use credentials come from: one `CallCredential` per tool call (the broker's), and the
 * listing credential a remote upstream needs outside any call (`withCredential`, mcp-upstream's
 * `CredentialBroker`). Built before the connectors and the broker, and handed to both, so neither
 * needs the other. It also knows what is in flight, so quitting can wait for it to be revoked.
 */
import { performance } from 'node:perf_hooks';
import { AppError } from '../../../common/errors.ts';
import type { AuditSink } from '../ports.ts';
import type { CallPlan, Credential } from '../connectors/types.ts';
import {
  CallCredential,
  credentialSettings,
  type CredentialContext,
  type CredentialOptions,
} from './call-credential.ts';
import { auditRecord } from './call-record.ts';
import { CallTrace, delay, round } from './call-trace.ts';

export interface CredentialsOptions extends CredentialOptions {
  /** Where a listing's `system` record goes. */
  audit: AuditSink;
  /** Tags every record as written against the local lab. */
  demo?: boolean;
}

export interface Credentials {
  /** Which delegation profile the IdP decides under: on every record, so none reads as stronger than it was. */
  readonly delegation: 'rar' | 'scopes';
  /** One call's credential; hold it with `await using` so it is revoked whatever happens. */
  open(plan: CallPlan, trace: CallTrace, ctx: CredentialContext): CallCredential;
  /**
   * Runs `use` with a credential for a tier-1 plan outside any tools/call (a remote upstream's tool
   * listing): exchange → Vault → `use` → revoke, one `system` audit record with every hop and join
   * key. A plan above tier 1 is refused before any token is read, so approvals cannot be skipped here.
   */
  withCredential<T>(
    plan: CallPlan,
    use: (access: { obo: string; credential: Credential }) => Promise<T>,
    signal: AbortSignal,
  ): Promise<T>;
  /** Counts `work` as in flight until it settles. */
  track<T>(work: Promise<T>): Promise<T>;
  /** Waits up to `ms` for everything in flight to settle, telling `waiting` how many there are first. */
  drain(ms: number, waiting?: (count: number) => void): Promise<void>;
}

export function createCredentials(options: CredentialsOptions): Credentials {
  const settings = credentialSettings(options);
  const delegation = options.idp.delegation ?? 'rar';
  const log = settings.log;
  const inFlight = new Set<Promise<unknown>>();

  function track<T>(work: Promise<T>): Promise<T> {
    inFlight.add(work);
    const done = () => inFlight.delete(work);
    void work.then(done, done);
    return work;
  }

  async function withCredential<T>(
    plan: CallPlan,
    use: (access: { obo: string; credential: Credential }) => Promise<T>,
    signal: AbortSignal,
  ): Promise<T> {
    const started = performance.now();
    const trace = new CallTrace();
    const user = settings.tokens.user();
    let failure: AppError | undefined;
    let value: T | undefined;
    try {
      if (plan.tier !== 1) {
        trace.record('approval', 'denied', 0, { code: 'POLICY_BLOCKED' });
        throw new AppError(
          'POLICY_BLOCKED',
          `Countersign obtains credentials outside a tool call only for tier-1 work; ${plan.tool} is tier ${plan.tier}.`,
        );
      }
      trace.record('approval', 'skipped', 0);
      // A listing's credential is the OBO or an API key: there is no database role to check afterwards.
      await using held = new CallCredential(settings, plan, trace, {
        signal,
        progress: () => {},
        expectedSub: user?.sub,
      });
      const { obo, credential } = await held.obtain();
      const used = await trace.hop(
        'execute',
        async () => trace.secrets.maskDeep(await use({ obo: obo.token, credential })),
        (u) => `${plan.reason}${u.masked ? "; it carried this listing's own credential, masked" : ''}`,
      );
      value = used.value;
    } catch (error) {
      failure = AppError.from(error);
      if (signal.aborted && failure.code !== 'CANCELLED' && failure.code !== 'TIMEOUT') {
        failure = new AppError('CANCELLED', 'The request was cancelled.', { cause: error });
      }
    }
    const durationMs = round(performance.now() - started);
    const { record, error } = auditRecord({
      kind: 'system',
      trace,
      user,
      tool: plan.tool,
      plan,
      ...(failure ? { failure } : {}),
      summary: (outcome) => `${plan.reason} on ${plan.target} → ${outcome}`,
      delegation,
      ...(options.demo ? { demo: true } : {}),
      durationMs,
    });
    try {
      await options.audit.append(record, { knownSecrets: trace.secrets });
    } catch (e) {
      log(`broker: audit append failed for ${plan.tool} (${AppError.from(e, 'AUDIT_FAILED').code})`);
      if (!failure)
        failure = new AppError(
          'AUDIT_FAILED',
          `Countersign could not record ${plan.reason}, so it does not use the result.`,
        );
    }
    log(
      `broker: ${plan.tool} (${plan.reason}) outcome=${record.outcome}${failure ? ` code=${failure.code}` : ''} jti=${trace.keys.obo_jti ?? '-'} ms=${durationMs}`,
    );
    if (failure)
      throw new AppError(
        failure.code,
        error?.message ?? failure.message,
        failure.stepUp ? { stepUp: failure.stepUp } : undefined,
      );
    return value as T;
  }

  return {
    delegation,
    open: (plan, trace, ctx) => new CallCredential(settings, plan, trace, ctx),
    withCredential: (plan, use, signal) => track(withCredential(plan, use, signal)),
    track,
    async drain(ms, waiting) {
      if (inFlight.size === 0) return;
      waiting?.(inFlight.size);
      await Promise.race([Promise.allSettled([...inFlight]), delay(ms)]);
    },
  };
}
