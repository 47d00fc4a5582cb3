/**
 * The core's answer to every channel of `CHANNELS` (common/contract.ts) once it is configured: what a
 * UI host serves. The setup channels refuse here (first run is main/core/setup); the settings file's
 * channels are main/core/setup/settings-edit.ts.
 */
import { isAbsolute } from 'node:path';
import type { ContractHandlers, SettingsChangeView, Status } from '../../common/contract.ts';
import { AppError } from '../../common/errors.ts';
import type { CountersignPaths } from '../../common/paths.ts';
import type { ApprovalService } from './approvals/approval-service.ts';
import type { AuditStore } from './audit/store.ts';
import { exportLines, exportFilename, EXPORT_MEDIA_TYPES, writeExportFile } from './audit/export.ts';
import { auditPage } from './audit/timeline-page.ts';
import type { CoreAuth } from './auth/auth-service.ts';
import type { Broker } from './broker/index.ts';
import { findNodeOnPath, installClaudeDesktopEntry, mcpConfigEntry } from './claude-desktop/config.ts';
import type { ClaudeDesktopEntryState } from './claude-desktop/entry-state.ts';
import type { AppConfig } from './config/config.ts';
import { claudeAccepts } from './mcp/mcp-session.ts';
import type { OpenExternal } from './ports.ts';
import { settingsEditHandlers } from './setup/settings-edit.ts';

export interface CoreHandlerDeps {
  config: AppConfig;
  paths: CountersignPaths;
  auth: CoreAuth;
  approvals: ApprovalService;
  audit: AuditStore;
  broker: Broker;
  openExternal: OpenExternal;
  /** The host's save dialog (CoreOptions.chooseExportFile); absent, `audit.saveExport` is refused. */
  chooseExportFile?: (suggested: { filename: string; format: 'jsonl' | 'csv' }) => Promise<string | undefined>;
  /** The host's confirmation of a settings change (CoreOptions.confirmSettings); absent, none is asked. */
  confirmSettings?: (view: SettingsChangeView) => Promise<boolean>;
  managed?: { where: string; fields: string[] };
  /** The person's configuration file; absent, the settings screen cannot change it. */
  configFile?: string;
  /** The COUNTERSIGN_HOME this core runs under (CoreOptions.countersignHome). */
  countersignHome?: string;
  /** The policy file as written, shown read-only. */
  policyText: string;
  /** The Vault roles this configuration logs in to. */
  vaultRoles: string[];
  claudeDesktop: ClaudeDesktopEntryState;
  status(): Status;
  /** Tells the UI the status changed. */
  statusChanged(): void;
}

export function coreHandlers(d: CoreHandlerDeps): ContractHandlers {
  const { config, auth, approvals, audit, broker } = d;
  return {
    'status.get': async () => d.status(),
    'session.signIn': async () => ({ user: await auth.signIn({ openExternal: d.openExternal }) }),
    'session.signOut': async () => {
      await auth.signOut();
      approvals.clear();
      return { ok: true as const };
    },
    'audit.page': async (request) => auditPage(audit, request),
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
      if (!d.chooseExportFile) throw new AppError('EXPORT_FAILED', 'This window cannot save files; use the export download instead.');
      const path = await d.chooseExportFile({ filename: exportFilename(format), format });
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
      vault: { address: config.vault.address, authMount: config.vault.authMount, roles: d.vaultRoles },
      policy: { path: config.policyFile, text: d.policyText },
      claudeDesktop: { configPath: d.claudeDesktop.path, configured: d.claudeDesktop.configured },
      dataDir: d.paths.dataDir,
      demo: config.demo,
      managed: d.managed ?? null,
    }),
    'claude.connect': async () => {
      // The catalogue must exist before Claude starts: Claude Desktop uses only the tools of its first
      // listing, and an upstream can list only for a signed-in person. Signing in lists them
      // (auth.onStatus → warm); warm again here for a session that was already signed in.
      if (auth.status().state !== 'signed_in') await auth.signIn({ openExternal: d.openExternal });
      await broker.warm();
      const tools = (await broker.listTools()).filter(claudeAccepts).length;
      const entry = mcpConfigEntry({
        countersignHome: d.countersignHome,
        nodePath: process.versions.electron ? await findNodeOnPath() : undefined,
      });
      await installClaudeDesktopEntry(d.claudeDesktop.path, entry);
      await d.claudeDesktop.refresh();
      d.statusChanged();
      return {
        configured: true,
        configPath: d.claudeDesktop.path,
        message: `Countersign is set up in Claude Desktop with ${tools} tool${tools === 1 ? '' : 's'}. Quit and reopen Claude Desktop to load them.`,
      };
    },
    // The setup screen is for a first run only (main/core/setup): a configured app is changed in its file.
    'setup.get': alreadyConfigured,
    'setup.discover': alreadyConfigured,
    'setup.check': alreadyConfigured,
    'setup.save': alreadyConfigured,
    ...(d.configFile
      ? settingsEditHandlers({ file: d.configFile, platform: process.platform, env: process.env, ...(d.confirmSettings ? { confirm: d.confirmSettings } : {}) })
      : { 'settings.config': noConfigFile, 'settings.save': noConfigFile }),
  };
}

async function noConfigFile(): Promise<never> {
  throw new AppError('CONFIG_INVALID', 'This app was started without naming its configuration file, so the settings screen cannot change it: edit the file and restart.');
}

async function alreadyConfigured(): Promise<never> {
  throw new AppError('CONFIG_INVALID', 'Countersign is already configured: change its configuration file and restart it.');
}
