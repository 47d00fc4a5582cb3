/**
 * The core, composed: configuration → keychain → sign-in → audit → approvals → broker (exchange, Vault,
 * connectors) → the local socket for bridges → the contract handlers any UI host serves. The same code
 * runs in Electron's utility process and under plain Node (`countersign serve`); what differs between
 * hosts comes in as arguments (a Prompter, OpenExternal, the host name).
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import type { ContractHandlers, EventName, EventOf, EventSubscribe, Status } from '../../common/contract.ts';
import type { Hop } from '../../common/audit-record.ts';
import { AppError } from '../../common/errors.ts';
import { resolvePaths, type CountersignPaths } from '../../common/paths.ts';
import { ApprovalService } from './approvals/approval-service.ts';
import { approverFor } from './approvals/broker-approver.ts';
import type { Prompter } from './approvals/prompter.ts';
import { AuditStore } from './audit/store.ts';
import { SqliteCallJournal } from './audit/journal.ts';
import { exportLines, exportFilename, EXPORT_MEDIA_TYPES, writeExportFile } from './audit/export.ts';
import { createBroker, createCredentials, type Broker } from './broker/index.ts';
import { claudeDesktopConfigPath, findNodeOnPath, installClaudeDesktopEntry, mcpConfigEntry } from './claude-desktop/config.ts';
import type { AppConfig } from './config/config.ts';
import type { Connector } from './connectors/types.ts';
import { createPostgresConnector } from './connectors/postgres/connector.ts';
import { isLoopbackHost, postgresSsl } from './connectors/postgres/tls.ts';
import { createUpstreamConnectors } from './connectors/mcp-upstream/index.ts';
import { ensurePrivateDataDir } from './data-dir.ts';
import { exchangeClientOptions } from './idp/exchange-client.ts';
import { settingsEditHandlers } from './setup/settings-edit.ts';
import { createTokenExchanger } from './idp/token-exchange.ts';
import { startSocketServer, takeCoreLock, type Log, type SocketServer } from './mcp/socket-server.ts';
import type { CoreLock } from './mcp/core-lock.ts';
import { CatalogueWatch } from './mcp/catalogue-watch.ts';
import { claudeAccepts } from './mcp/mcp-session.ts';
import type { SessionInfo } from './mcp/mcp-session.ts';
import { loadPolicyFile } from './policy/policy.ts';
import { AuthService } from './auth/auth-service.ts';
import type { OpenExternal, SecretStore } from './ports.ts';
import { createVaultClient, type VaultClient } from './vault/client.ts';
import { revokeLeaseOnRestart, type AgentLeaseRecovery } from './vault/agent-mode.ts';

/**
 * What the core needs of sign-in: the user's tokens, and the session's state for the UI (main/core/auth).
 * `client` and `clientRejected` are there when sign-in may use this install's own registered client
 * (RFC 7591): the exchange must present the client the subject token was issued to.
 */
export type CoreAuth = Pick<AuthService, 'getAccessToken' | 'stepUp' | 'user' | 'dpopKeyPair' | 'status' | 'onStatus' | 'onSignOut' | 'signIn' | 'signOut' | 'close'> &
  Partial<Pick<AuthService, 'client' | 'clientRejected'>>;

export interface CoreOptions {
  config: AppConfig;
  /** The fields of `config` the organisation manages (config/managed.ts): shown as such, never the person's to change. */
  managed?: { where: string; fields: string[] };
  /** The person's configuration file, which the settings screen may change; absent, it cannot. */
  configFile?: string;
  host: 'electron' | 'headless';
  version: string;
  secrets: SecretStore;
  prompter: Prompter;
  openExternal: OpenExternal;
  /** Builds sign-in once the audit store exists (it records sign-in and sign-out); AuthService by default. */
  createAuth?(deps: { config: AppConfig; secrets: SecretStore; openExternal: OpenExternal; audit: AuditStore; log: Log }): Promise<CoreAuth>;
  paths?: CountersignPaths;
  log: Log;
  /**
   * Asks the person where to save an export (the desktop shell's native save dialog); undefined when
   * they cancel. Hosts without one leave it out and `audit.saveExport` is refused.
   */
  chooseExportFile?: (suggested: { filename: string; format: 'jsonl' | 'csv' }) => Promise<string | undefined>;
  /**
   * Brings the app in front of the person, who is needed now (a call arrived before sign-in): the
   * desktop shell shows its window, the headless host opens the web UI in the browser.
   */
  present?: (why: 'sign-in') => void;
  /**
   * `countersign open` (a control request over the socket): the desktop shell shows its window and
   * answers `{}`; the headless host answers a fresh launch link for the command to open.
   */
  openUi?: () => Promise<{ url?: string }>;
  /** How often the status asks Vault's `sys/health` (15 s by default; also after a call Vault failed). */
  vaultHealthEveryMs?: number;
}

export interface Core {
  readonly handlers: ContractHandlers;
  readonly events: EventSubscribe;
  readonly broker: Broker;
  readonly audit: AuditStore;
  readonly approvals: ApprovalService;
  readonly auth: CoreAuth;
  readonly vault: VaultClient;
  readonly paths: CountersignPaths;
  readonly socket: SocketServer;
  status(): Status;
  /** Drains in-flight calls (their credentials are revoked in their own `finally`), then stops everything. */
  stop(): Promise<void>;
}

type Listeners = { [E in EventName]: Set<(payload: EventOf<E>) => void> };

export async function startCore(options: CoreOptions): Promise<Core> {
  const paths = options.paths ?? resolvePaths({ platform: process.platform, env: process.env, home: homedir() });
  // A data directory others can reach is refused before anything, the lock included, is written in it.
  ensurePrivateDataDir(paths.dataDir);
  // Then, first of all: a second core started at the same instant (two bridges that each found no app)
  // stops here, before it opens the audit store or refreshes the sign-in the first one is using.
  const lock = await takeCoreLock(paths);
  try {
    return await startLockedCore(options, paths, lock);
  } catch (error) {
    await lock.release();
    throw error;
  }
}

async function startLockedCore(options: CoreOptions, paths: CountersignPaths, lock: CoreLock): Promise<Core> {
  const { config, log } = options;
  if (config.idp.allowInsecureHttpForLoopbackOnly) {
    log.warn('allowInsecureHttpForLoopbackOnly is on: plain http is permitted to a loopback IdP (the lab). Never use it in production.');
  }
  if (config.idp.allowLongLivedOboUpToSeconds) {
    log.warn(
      `idp.allowLongLivedOboUpToSeconds is ${config.idp.allowLongLivedOboUpToSeconds}: OBOs living longer than 60 s are accepted; a leaked one can log in to Vault until it expires.`,
    );
  }
  if (config.vault.allowInsecureHttpForLoopbackOnly) {
    log.warn('vault.allowInsecureHttpForLoopbackOnly is on: plain http is permitted to a loopback Vault (the lab). Never use it in production.');
  }
  const policy = await loadPolicyFile(config.policyFile);
  const policyText = await readFile(config.policyFile, 'utf8');
  const audit = await AuditStore.open({
    dataDir: paths.dataDir,
    secrets: options.secrets,
    anchorUrl: config.audit.anchorUrl,
    checkpointEvery: config.audit.checkpointEvery,
    redaction: config.audit.redaction,
  });
  const journal = new SqliteCallJournal(paths.dataDir, { ...(audit.installKeys ? { sealKey: audit.installKeys.hmacKey } : {}) });
  const listeners: Listeners = { 'status.changed': new Set(), 'audit.appended': new Set(), 'approvals.changed': new Set() };
  const emit = <E extends EventName>(event: E, payload: EventOf<E>) => {
    for (const l of listeners[event]) (l as (p: EventOf<E>) => void)(payload);
  };
  const events: EventSubscribe = (event, listener) => {
    const set = listeners[event] as Set<typeof listener>;
    set.add(listener);
    return () => set.delete(listener);
  };

  const auth = options.createAuth
    ? await options.createAuth({ config, secrets: options.secrets, openExternal: options.openExternal, audit, log })
    : await AuthService.create({
        config: config.idp,
        secrets: options.secrets,
        openExternal: options.openExternal,
        audit,
        log: (line) => log.info(line),
        demo: config.demo,
      });
  const approvals = new ApprovalService({
    prompter: options.prompter,
    audit,
    cacheTtlMs: config.approvals.tier2CacheMinutes * 60_000,
    timeoutMs: config.approvals.timeoutSeconds * 1000,
    tier3: config.approvals.tier3,
    demo: config.demo,
  });
  const vault = createVaultClient({
    address: config.vault.address,
    namespace: config.vault.namespace,
    caCert: config.vault.caCertFile ? await readFile(config.vault.caCertFile, 'utf8') : undefined,
    timeoutMs: config.vault.timeoutMs,
  });
  const idp = createTokenExchanger({
    issuer: config.idp.issuer,
    clientId: config.idp.clientId,
    // The exchange authenticates as the client sign-in used (this install's registered one when there
    // is one), or as the configured exchange client.
    ...exchangeClientOptions(
      config.idp,
      auth.client && auth.clientRejected ? { client: auth.client.bind(auth), clientRejected: auth.clientRejected.bind(auth) } : undefined,
      options.secrets,
    ),
    allowInsecureHttpForLoopbackOnly: config.idp.allowInsecureHttpForLoopbackOnly,
    delegation: config.idp.delegation,
    scopePrefix: config.idp.delegationScopePrefix,
    ...(config.idp.allowLongLivedOboUpToSeconds ? { maxOboLifetimeS: config.idp.allowLongLivedOboUpToSeconds } : {}),
  });
  const postgresPolicy = policy.postgres;
  // Calls a killed run left in flight: their credentials are revoked and their records closed before any new call.
  await closeAbortedCalls(journal, audit, log, vault, postgresPolicy ? { tokens: auth, idp, vault, audience: postgresPolicy.audience } : undefined);
  const connectors: Connector[] = [];
  if (config.postgres && postgresPolicy) {
    const { host, port, database, connectTimeoutMs } = config.postgres;
    const ssl = await postgresSsl(config.postgres);
    if (!ssl && !isLoopbackHost(host)) log.warn(`postgres.sslmode is disable: statements and per-call credentials travel to ${host} unencrypted.`);
    connectors.push(createPostgresConnector({ policy: postgresPolicy, connection: { host, port, database, ssl, ...(connectTimeoutMs ? { connectTimeoutMs } : {}) } }));
  }
  // Built before the connectors and the broker: the upstreams' listings and every call take their credentials from it.
  const credentialOptions = { tokens: auth, idp, vault, audit, demo: config.demo, log: (line: string) => log.info(line), vaultMode: config.vault.mode };
  const credentials = createCredentials(credentialOptions);
  connectors.push(
    ...createUpstreamConnectors(config.upstreams, {
      credentials,
      tokens: auth,
      listingsDir: join(paths.dataDir, 'upstream-listings'),
      log: (line) => log.warn(line),
    }),
  );
  const broker = createBroker({
    ...credentialOptions,
    credentials,
    connectors,
    approver: approverFor(approvals),
    journal,
    onSignInNeeded: () => options.present?.('sign-in'),
  });

  const catalogue = new CatalogueWatch();
  const offCatalogue = catalogue.onChange((stale) => {
    if (stale > 0) log.warn(RESTART_CLAUDE);
    emit('status.changed', status());
  });
  const offToolsChanged = broker.onToolsChanged(() => {
    void broker.listTools().then(
      (tools) => catalogue.observed(tools.filter(claudeAccepts)),
      () => {},
    );
  });

  const sessions = new Map<string, SessionInfo & { calls: number }>();
  const socket = await startSocketServer({
    paths,
    lock,
    toolHost: broker,
    log,
    onListed: (sessionId, tools) => catalogue.listed(sessionId, tools),
    onSessionClosed: (sessionId) => catalogue.closed(sessionId),
    control: async (method) => {
      if (method !== 'open') throw new AppError('INPUT_INVALID', `Unknown control request ${method.slice(0, 40)}.`);
      if (!options.openUi) throw new AppError('INTERNAL', 'This Countersign cannot open its window from the command line.');
      return options.openUi();
    },
    serverInfo: { name: 'countersign', version: options.version },
    onSession: (info) => {
      sessions.set(info.sessionId, { ...info, calls: 0 });
      emit('status.changed', status());
    },
  });

  const claudeConfigPath = claudeDesktopConfigPath({ platform: process.platform, env: process.env, home: homedir() });
  let claudeConfigured = false;
  const refreshClaudeConfigured = async () => {
    try {
      const text = await readFile(claudeConfigPath, 'utf8');
      claudeConfigured = Boolean((JSON.parse(text) as { mcpServers?: Record<string, unknown> }).mcpServers?.countersign);
    } catch {
      claudeConfigured = false;
    }
  };
  await refreshClaudeConfigured();

  let stopped = false;
  // The Vault roles this configuration logs in to: the database policy's three and each API-key upstream's.
  const vaultRoles = [
    ...(postgresPolicy ? Object.values(postgresPolicy.roles) : []),
    ...config.upstreams.flatMap((u) => (u.auth === 'api-key' && u.apiKey ? [u.apiKey.role] : [])),
  ].filter((r, i, all) => all.indexOf(r) === i);
  // Vault's state as its sys/health tells it (needs no token), asked now, every vaultHealthEveryMs and
  // after a call Vault failed; the status changes when the state does.
  let vaultState: Status['vault'] = { address: config.vault.address, state: 'unknown' };
  let vaultChecking: Promise<void> | undefined;
  const checkVault = (): Promise<void> =>
    (vaultChecking ??= (async () => {
      let next: Status['vault'];
      try {
        const h = await vault.health(AbortSignal.timeout(5_000));
        const state = !h.initialized ? 'uninitialized' : h.sealed ? 'sealed' : h.standby ? 'standby' : 'ok';
        next = { address: config.vault.address, state, initialized: h.initialized, sealed: h.sealed, ...(h.version ? { version: h.version } : {}) };
      } catch {
        next = { address: config.vault.address, state: 'unreachable' };
      }
      const changed = JSON.stringify(next) !== JSON.stringify(vaultState);
      vaultState = next;
      if (changed && !stopped) emit('status.changed', status());
    })().finally(() => (vaultChecking = undefined)));
  void checkVault();
  const vaultTimer = setInterval(() => void checkVault(), options.vaultHealthEveryMs ?? 15_000);
  vaultTimer.unref();

  function status(): Status {
    const live = socket.sessions();
    const liveIds = new Set(live.map((s) => s.sessionId));
    for (const id of sessions.keys()) if (!liveIds.has(id)) sessions.delete(id);
    const a = auth.status();
    return {
      host: options.host,
      version: options.version,
      demo: config.demo,
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
      idp: {
        issuer: config.idp.issuer,
        delegation: config.idp.delegation,
        state: a.state === 'needs_sign_in' && a.code === 'IDP_UNAVAILABLE' ? 'unreachable' : a.state === 'signed_in' ? 'ok' : 'unknown',
      },
      vault: vaultState,
      claudeDesktop: { configured: claudeConfigured, connected: live.length > 0, restartNeeded: catalogue.stale() > 0 },
      bridgeSessions: live.map((s) => ({
        id: s.sessionId,
        clientName: s.client.name,
        clientVersion: s.client.version,
        pid: s.client.pid,
        connectedAt: s.connectedAt,
        calls: sessions.get(s.sessionId)?.calls ?? 0,
      })),
      pendingApprovals: approvals.pending().length,
      calls: audit.count({ kind: ['tool_call'] }),
    };
  }

  const offAudit = audit.onAppend((record) => {
    emit('audit.appended', record as EventOf<'audit.appended'>);
    if (record.kind !== 'tool_call') return;
    const session = record.keys.mcp_session_id ? sessions.get(record.keys.mcp_session_id) : undefined;
    if (session) session.calls += 1;
    if (record.error?.code.startsWith('VAULT_')) void checkVault();
    emit('status.changed', status());
  });
  const offApprovals = approvals.onChange(() => {
    emit('approvals.changed', { pending: approvals.pending(), cached: approvals.cached() });
    emit('status.changed', status());
  });
  // Upstreams that could not list before sign-in list now, and tell connected clients their tools changed.
  let signedIn = auth.status().state === 'signed_in';
  // Signed in from the keychain: list the upstreams now, so a kept listing is replaced by a fresh one.
  if (signedIn) void broker.warm();
  const offAuth = auth.onStatus((s) => {
    emit('status.changed', status());
    const now = s.state === 'signed_in';
    if (now && !signedIn) void broker.warm();
    signedIn = now;
  });
  const offSignOut = auth.onSignOut(() => approvals.clear());

  const handlers: ContractHandlers = {
    'status.get': async () => status(),
    'session.signIn': async () => ({ user: await auth.signIn({ openExternal: options.openExternal }) }),
    'session.signOut': async () => {
      await auth.signOut();
      approvals.clear();
      return { ok: true as const };
    },
    'audit.page': async (request) => {
      const page = audit.page(request);
      return { records: page.records, total: page.total ?? page.records.length, total_capped: page.total_capped ?? false, head: page.head };
    },
    'audit.get': async ({ seq }) => {
      const record = audit.get(seq);
      if (!record) throw new AppError('NOT_FOUND', `There is no audit record ${seq}.`);
      return record;
    },
    'audit.verify': async () => audit.verify(),
    'audit.export': async ({ format, filter }) => ({
      filename: exportFilename(format),
      mediaType: EXPORT_MEDIA_TYPES[format],
      content: [...exportLines(audit, format, filter)].join(''),
    }),
    'audit.saveExport': async ({ format, filter }) => {
      if (!options.chooseExportFile) throw new AppError('EXPORT_FAILED', 'This window cannot save files; use the export download instead.');
      const path = await options.chooseExportFile({ filename: exportFilename(format), format });
      if (!path) return { saved: false as const };
      if (!isAbsolute(path)) throw new AppError('EXPORT_FAILED', 'The save dialog did not return a full path; nothing was saved.');
      return { saved: true as const, path, ...(await writeExportFile(audit, format, filter, path)) };
    },
    'approvals.pending': async () => approvals.pending(),
    'approvals.decide': async ({ id, decision, digest }) => {
      approvals.decide(id, decision, digest);
      return { ok: true as const };
    },
    'approvals.deny': async ({ id }) => {
      approvals.deny(id);
      return { ok: true as const };
    },
    'approvals.cached': async () => approvals.cached(),
    'approvals.revoke': async ({ id }) => {
      approvals.revoke(id);
      return { ok: true as const };
    },
    'settings.get': async () => ({
      idp: {
        issuer: config.idp.issuer,
        // The per-install client when one was registered (RFC 7591), else the configured public client.
        clientId: auth.client ? await auth.client().then((c) => c.clientId, () => config.idp.clientId) : config.idp.clientId,
        scopes: config.idp.scopes,
        dpop: !!auth.dpopKeyPair(),
      },
      vault: { address: config.vault.address, authMount: config.vault.authMount, roles: vaultRoles },
      policy: { path: config.policyFile, text: policyText },
      claudeDesktop: { configPath: claudeConfigPath, configured: claudeConfigured },
      dataDir: paths.dataDir,
      demo: config.demo,
      managed: options.managed ?? null,
    }),
    'claude.connect': async () => {
      // The catalogue must exist before Claude starts: Claude Desktop uses only the tools of its first
      // listing, and an upstream can list only for a signed-in person. Signing in lists them
      // (auth.onStatus → warm); warm again here for a session that was already signed in.
      if (auth.status().state !== 'signed_in') await auth.signIn({ openExternal: options.openExternal });
      await broker.warm();
      const tools = (await broker.listTools()).filter(claudeAccepts).length;
      const entry = mcpConfigEntry({
        countersignHome: process.env.COUNTERSIGN_HOME || undefined,
        nodePath: process.versions.electron ? await findNodeOnPath() : undefined,
      });
      await installClaudeDesktopEntry(claudeConfigPath, entry);
      await refreshClaudeConfigured();
      emit('status.changed', status());
      return {
        configured: true,
        configPath: claudeConfigPath,
        message: `Countersign is set up in Claude Desktop with ${tools} tool${tools === 1 ? '' : 's'}. Quit and reopen Claude Desktop to load them.`,
      };
    },
    // The setup screen is for a first run only (main/core/setup): a configured app is changed in its file.
    'setup.get': alreadyConfigured,
    'setup.discover': alreadyConfigured,
    'setup.check': alreadyConfigured,
    'setup.save': alreadyConfigured,
    ...(options.configFile
      ? settingsEditHandlers({ file: options.configFile, platform: process.platform, env: process.env })
      : { 'settings.config': noConfigFile, 'settings.save': noConfigFile }),
  };

  return {
    handlers,
    events,
    broker,
    audit,
    approvals,
    auth,
    vault,
    paths,
    socket,
    status,
    async stop() {
      if (stopped) return;
      stopped = true;
      clearInterval(vaultTimer);
      await vaultChecking;
      offAudit();
      offApprovals();
      offCatalogue();
      offToolsChanged();
      offAuth();
      offSignOut();
      approvals.clear();
      await socket.close();
      await broker.close();
      await auth.close();
      await vault.close();
      journal.close();
      await audit.close();
    },
  };
}

/** Said on stderr and in the UI when sessions hold tools that are no longer Countersign's catalogue. */
export const RESTART_CLAUDE =
  "Countersign's tools changed since Claude Desktop started. Claude Desktop uses only the tools it was given when it started: quit and reopen it to use the new ones.";

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

async function noConfigFile(): Promise<never> {
  throw new AppError('CONFIG_INVALID', 'This app was started without naming its configuration file, so the settings screen cannot change it: edit the file and restart.');
}

async function alreadyConfigured(): Promise<never> {
  throw new AppError('CONFIG_INVALID', 'Countersign is already configured: change its configuration file and restart it.');
}
