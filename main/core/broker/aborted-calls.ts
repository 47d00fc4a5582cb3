/**
 * Calls a previous run of the core left in flight when it died, closed on the next start before any
 * new call: each gets its `aborted` record and its per-call credential is revoked where it still can be.
 */
import type { Hop } from '../../../common/audit-record.ts';
import { AppError } from '../../../common/errors.ts';
import type { AuditStore } from '../audit/store.ts';
import type { SqliteCallJournal } from '../audit/journal.ts';
import type { Log } from '../mcp/socket-server.ts';
import type { VaultClient } from '../vault/client.ts';
import { revokeLeaseOnRestart, type AgentLeaseRecovery } from '../vault/agent-mode.ts';

/**
 * Calls a previous run of the core was making when it died: each gets its record on the timeline as
 * `aborted`, with the join keys known at the time. Its per-call credential is revoked now: in JWT-login
 * mode with the Vault token the journal held sealed, in agent mode (a lease and no Vault token) with a
 * fresh revocation-only OBO (`agent`). Otherwise it was revoked by that run or expires at its Vault TTL.
 */
export async function closeAbortedCalls(
  journal: SqliteCallJournal,
  audit: AuditStore,
  log: Log,
  vault?: Pick<VaultClient, 'revokeSelf'>,
  agent?: AgentLeaseRecovery,
): Promise<number> {
  const orphans = journal.orphans().filter(({ id, entry }) => {
    // The run died after the call's own record was appended but before its journal entry was closed.
    const started = Date.parse(entry.startedAt);
    const { mcp_session_id: session, mcp_request_id: request } = entry.keys;
    if (session !== undefined && request !== undefined && audit.hasCallRecord(session, request, Number.isFinite(started) ? started - 60_000 : 0)) {
      journal.end(id);
      return false;
    }
    return true;
  });
  const tokens = new Map(orphans.map(({ id, entry }) => [id, vault ? journal.unsealVaultToken(id, entry) : undefined]));
  // Agent mode: the lease was minted under the OBO itself, so no Vault token was ever logged in for it.
  // These are revoked side by side: an IdP that does not answer delays the start once, not once per call.
  const agentRevocations = new Map(
    orphans.flatMap(({ id, entry }) => {
      const lease = !tokens.get(id) && !entry.keys.vault_accessor ? entry.keys.lease_id : undefined;
      if (!lease || !agent) return [];
      const revocation = revokeLeaseOnRestart(agent, entry.user, lease).catch((error: unknown) => {
        const code = AppError.from(error).code;
        const hop: Hop = { name: 'revoke', outcome: 'error', ms: 0, code, detail: 'mode=agent lease not revoked on restart; it expires at its Vault TTL' };
        return { hops: [hop], fate: `its lease could not be revoked on restart (${code}) and expires within its Vault TTL` };
      });
      return [[id, revocation] as const];
    }),
  );
  let closed = 0;
  for (const { id, entry } of orphans) {
    closed += 1;
    const token = tokens.get(id);
    let revoke: Hop | undefined;
    let hops: Hop[] = [];
    let agentFate: string | undefined;
    const agentRevocation = agentRevocations.get(id);
    if (agentRevocation) {
      ({ hops, fate: agentFate } = await agentRevocation);
      revoke = hops.find((h) => h.name === 'revoke');
    } else if (token && vault) {
      const t0 = performance.now();
      try {
        await vault.revokeSelf(token, AbortSignal.timeout(5_000));
        revoke = { name: 'revoke', outcome: 'ok', ms: Math.round(performance.now() - t0), detail: 'revoked on restart' };
      } catch (error) {
        const code = AppError.from(error).code;
        // 403: the token is gone already (expired at its TTL, or revoked before the run died), and its leases with it.
        revoke =
          code === 'VAULT_PERMISSION_DENIED'
            ? { name: 'revoke', outcome: 'ok', ms: Math.round(performance.now() - t0), detail: 'token already invalid on restart' }
            : { name: 'revoke', outcome: 'error', ms: Math.round(performance.now() - t0), code, detail: 'revocation on restart failed; the credential expires at its Vault TTL' };
      }
    }
    if (revoke && hops.length === 0) hops = [revoke];
    const fate =
      agentFate ??
      (!revoke
        ? 'any per-call credential expired at its Vault TTL'
        : revoke.outcome === 'ok'
          ? 'its per-call credential was revoked on restart'
          : 'its per-call credential could not be revoked on restart and expires at its Vault TTL');
    await audit.append({
      kind: 'tool_call',
      outcome: 'aborted',
      user: entry.user,
      client: entry.client,
      tool: entry.tool,
      ...(entry.tier ? { tier: entry.tier } : {}),
      ...(entry.target ? { target: entry.target } : {}),
      hops,
      keys: entry.keys,
      summary: `${entry.tool}: Countersign stopped while this call was in flight (started ${entry.startedAt}); ${fate}.`,
      ...(entry.demo ? { demo: true } : {}),
    });
    journal.end(id);
  }
  if (closed > 0) log.warn(`closed ${closed} call(s) left in flight by a previous run as aborted`);
  return closed;
}
