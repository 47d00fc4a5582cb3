/**
 * The core, composed: configuration → keychain → sign-in → audit → approvals → broker (exchange, Vault,
 * connectors) → the local socket for bridges → the contract handlers any UI host serves. The same code
 * runs in Electron's utility process and under plain Node (`countersign serve`); what differs between
 * hosts comes in as arguments (a Prompter, OpenExternal, the host name).
 */
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { ContractHandlers, EventName, EventOf, EventSubscribe, SettingsChangeView, Status } from '../../common/contract.ts';
import { AppError } from '../../common/errors.ts';
import { resolvePaths, type CountersignPaths } from '../../common/paths.ts';
import { ApprovalService } from './approvals/approval-service.ts';
import { approverFor } from './approvals/broker-approver.ts';
import type { Prompter } from './approvals/prompter.ts';
import { AuditStore } from './audit/store.ts';
import { SqliteCallJournal } from './audit/journal.ts';
import { closeAbortedCalls } from './broker/aborted-calls.ts';
import { createBroker, createCredentials, type Broker } from './broker/index.ts';
import { claudeDesktopConfigPath } from './claude-desktop/config.ts';
import { ClaudeDesktopEntryState } from './claude-desktop/entry-state.ts';
import type { AppConfig } from './config/config.ts';
import type { Connector } from './connectors/types.ts';
import { createPostgresConnector } from './connectors/postgres/connector.ts';
import { isLoopbackHost, postgresSsl } from './connectors/postgres/tls.ts';
import { createUpstreamConnectors } from './connectors/mcp-upstream/index.ts';
import { ensurePrivateDataDir } from './data-dir.ts';
import { exchangeClientOptions } from './idp/exchange-client.ts';
import { createTokenExchanger } from './idp/token-exchange.ts';
import { startSocketServer, takeCoreLock, type Log, type SocketServer } from './mcp/socket-server.ts';
import type { CoreLock } from './mcp/core-lock.ts';
import { CatalogueWatch } from './mcp/catalogue-watch.ts';
import { claudeAccepts } from './mcp/mcp-session.ts';
import type { SessionInfo } from './mcp/mcp-session.ts';
import { loadPolicyFile } from './policy/policy.ts';
import { AuthService, type CoreAuth } from './auth/auth-service.ts';
import { coreHandlers } from './core-handlers.ts';
import { coreStatus, VaultHealthWatch } from './core-status.ts';
import type { OpenExternal, SecretStore } from './ports.ts';
import type { SecretStoreStatus } from './secrets/open-secret-store.ts';
import { createVaultClient, type VaultClient } from './vault/client.ts';

export type { CoreAuth } from './auth/auth-service.ts';

export interface CoreOptions {
  config: AppConfig;
  /** The fields of `config` the organisation manages (config/managed.ts): shown as such, never the person's to change. */
  managed?: { where: string; fields: string[] };
  /** The person's configuration file, which the settings screen may change; absent, it cannot. */
  configFile?: string;
  host: 'electron' | 'headless';
  version: string;
  secrets: SecretStore;
  /** What `openSecretStore` said about `secrets` (the host's caller sets it): the status's `keychain`, so the UI can say why nothing is kept. */
  keychain?: SecretStoreStatus;
  prompter: Prompter;
  openExternal: OpenExternal;
  /** Builds sign-in once the audit store exists (it records sign-in and sign-out); AuthService by default. */
  createAuth?(deps: { config: AppConfig; secrets: SecretStore; openExternal: OpenExternal; audit: AuditStore; log: Log }): Promise<CoreAuth>;
  paths?: CountersignPaths;
  /**
   * The COUNTERSIGN_HOME `paths` were resolved under, when the host gave one (`serve --home`, the
   * demo): the entry the core writes for Claude passes it to the bridge, which must find this core.
   */
  countersignHome?: string;
  log: Log;
  /**
   * Asks the person where to save an export (the desktop shell's native save dialog); undefined when
   * they cancel. Hosts without one leave it out and `audit.saveExport` is refused.
   */
  chooseExportFile?: (suggested: { filename: string; format: 'jsonl' | 'csv' }) => Promise<string | undefined>;
  /**
   * Shows a settings change to the person before it is written (the desktop shell's native dialog);
   * true only when they apply it. Hosts without one leave it out and save without asking
   * (main/core/setup/settings-edit.ts).
   */
  confirmSettings?: (view: SettingsChangeView) => Promise<boolean>;
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

  const claudeDesktop = new ClaudeDesktopEntryState(claudeDesktopConfigPath({ platform: process.platform, env: process.env, home: homedir() }));
  await claudeDesktop.refresh();

  let stopped = false;
  // The Vault roles this configuration logs in to: the database policy's three and each API-key upstream's.
  const vaultRoles = [
    ...(postgresPolicy ? Object.values(postgresPolicy.roles) : []),
    ...config.upstreams.flatMap((u) => (u.auth === 'api-key' && u.apiKey ? [u.apiKey.role] : [])),
  ].filter((r, i, all) => all.indexOf(r) === i);
  const vaultHealth = new VaultHealthWatch(vault, config.vault.address, options.vaultHealthEveryMs ?? 15_000, () => {
    if (!stopped) emit('status.changed', status());
  });

  function status(): Status {
    return coreStatus({
      host: options.host,
      version: options.version,
      config,
      auth,
      socket,
      sessions,
      vault: vaultHealth.state,
      claudeDesktop: { configured: claudeDesktop.configured, restartNeeded: catalogue.stale() > 0 },
      approvals,
      audit,
      ...(options.keychain ? { keychain: options.keychain } : {}),
    });
  }

  const offAudit = audit.onAppend((record) => {
    emit('audit.appended', record as EventOf<'audit.appended'>);
    if (record.kind !== 'tool_call') return;
    const session = record.keys.mcp_session_id ? sessions.get(record.keys.mcp_session_id) : undefined;
    if (session) session.calls += 1;
    if (record.error?.code.startsWith('VAULT_')) void vaultHealth.check();
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

  const handlers = coreHandlers({
    config,
    paths,
    auth,
    approvals,
    audit,
    broker,
    openExternal: options.openExternal,
    ...(options.chooseExportFile ? { chooseExportFile: options.chooseExportFile } : {}),
    ...(options.confirmSettings ? { confirmSettings: options.confirmSettings } : {}),
    ...(options.managed ? { managed: options.managed } : {}),
    ...(options.configFile ? { configFile: options.configFile } : {}),
    countersignHome: options.countersignHome ?? (process.env.COUNTERSIGN_HOME || undefined),
    policyText,
    vaultRoles,
    claudeDesktop,
    status,
    statusChanged: () => emit('status.changed', status()),
  });

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
      await vaultHealth.stop();
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
