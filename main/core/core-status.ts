/**
 * The core's status as the UI shows it (`Status` in common/contract.ts): the session, the IdP, Vault's
 * health, Claude Desktop, the bridges connected and their calls. Built afresh on each ask; nothing in
 * it is a token.
 */
import type { Status } from '../../common/contract.ts';
import type { ApprovalService } from './approvals/approval-service.ts';
import type { AuditStore } from './audit/store.ts';
import type { AuthStatus } from './auth/auth-service.ts';
import type { AppConfig } from './config/config.ts';
import type { SessionInfo } from './mcp/mcp-session.ts';
import type { SocketServer } from './mcp/socket-server.ts';
import type { SecretStoreStatus } from './secrets/open-secret-store.ts';
import type { VaultClient } from './vault/client.ts';
import { TimeLimit } from './time-limit.ts';

export interface StatusSources {
  host: Status['host'];
  version: string;
  config: AppConfig;
  auth: { status(): AuthStatus };
  socket: Pick<SocketServer, 'sessions'>;
  /** The sessions seen, with their calls counted; those no longer connected are dropped here. */
  sessions: Map<string, SessionInfo & { calls: number }>;
  vault: Status['vault'];
  claudeDesktop: { configured: boolean; restartNeeded: boolean };
  approvals: Pick<ApprovalService, 'pending'>;
  audit: Pick<AuditStore, 'count'>;
  /** What `openSecretStore` found at start (the host opened it); absent, the status has no `keychain`. */
  keychain?: SecretStoreStatus;
}

export function coreStatus(s: StatusSources): Status {
  const live = s.socket.sessions();
  const liveIds = new Set(live.map((x) => x.sessionId));
  for (const id of s.sessions.keys()) if (!liveIds.has(id)) s.sessions.delete(id);
  const a = s.auth.status();
  return {
    host: s.host,
    version: s.version,
    demo: s.config.demo,
    setup: false,
    user: a.state === 'signed_in' ? a.user : null,
    session:
      a.state === 'signing_in'
        ? { state: a.state, url: a.url, userCode: a.userCode }
        : a.state === 'needs_sign_in'
          ? { state: a.state, reason: a.reason }
          : a.state === 'signed_in'
            ? { state: a.state, persistent: a.persistent }
            : { state: a.state },
    ...(s.keychain
      ? { keychain: s.keychain.persistent ? { persistent: true as const } : { persistent: false as const, code: s.keychain.code, reason: s.keychain.reason } }
      : {}),
    idp: {
      issuer: s.config.idp.issuer,
      delegation: s.config.idp.delegation,
      state: a.state === 'needs_sign_in' && a.code === 'IDP_UNAVAILABLE' ? 'unreachable' : a.state === 'signed_in' ? 'ok' : 'unknown',
    },
    vault: s.vault,
    claudeDesktop: { configured: s.claudeDesktop.configured, connected: live.length > 0, restartNeeded: s.claudeDesktop.restartNeeded },
    bridgeSessions: live.map((x) => ({
      id: x.sessionId,
      clientName: x.client.name,
      clientVersion: x.client.version,
      pid: x.client.pid,
      connectedAt: x.connectedAt,
      calls: s.sessions.get(x.sessionId)?.calls ?? 0,
    })),
    pendingApprovals: s.approvals.pending().length,
    calls: s.audit.count({ kind: ['tool_call'] }),
  };
}

/**
 * Vault's state as its `sys/health` tells it (needs no token), asked at start, every `everyMs` and
 * whenever `check()` is called (after a call Vault failed); `onChange` hears of each change.
 */
export class VaultHealthWatch {
  readonly #vault: Pick<VaultClient, 'health'>;
  readonly #address: string;
  readonly #onChange: () => void;
  readonly #timer: NodeJS.Timeout;
  #state: Status['vault'];
  #checking: Promise<void> | undefined;

  constructor(vault: Pick<VaultClient, 'health'>, address: string, everyMs: number, onChange: () => void) {
    this.#vault = vault;
    this.#address = address;
    this.#onChange = onChange;
    this.#state = { address, state: 'unknown' };
    void this.check();
    this.#timer = setInterval(() => void this.check(), everyMs);
    this.#timer.unref();
  }

  get state(): Status['vault'] {
    return this.#state;
  }

  check(): Promise<void> {
    return (this.#checking ??= (async () => {
      let next: Status['vault'];
      try {
        using limit = new TimeLimit(5_000);
        const h = await this.#vault.health(limit.signal);
        const state = !h.initialized ? 'uninitialized' : h.sealed ? 'sealed' : h.standby ? 'standby' : 'ok';
        next = { address: this.#address, state, initialized: h.initialized, sealed: h.sealed, ...(h.version ? { version: h.version } : {}) };
      } catch {
        next = { address: this.#address, state: 'unreachable' };
      }
      const changed = JSON.stringify(next) !== JSON.stringify(this.#state);
      this.#state = next;
      if (changed) this.#onChange();
    })().finally(() => (this.#checking = undefined)));
  }

  /** Stops asking and waits for an answer still on its way. */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#checking;
  }
}
