/**
 * The one contract between the app and its UI: every channel the renderer may call, with zod request
 * and response schemas, and every event the app pushes. The Electron preload exposes exactly these
 * channels, the headless web host validates every request against them, and both hosts parse every
 * response with them before it leaves, so an unknown field (a token that slipped into a handler's
 * return value) is stripped rather than sent. Nothing here carries a token, secret, verifier or
 * password: the renderer never holds one. `SHELL_CHANNELS` and `CORE_CHANNELS` are the two directions
 * between the desktop shell and the core's utility process; common/channel.ts serves every table.
 *
 * The tables are here; the schemas they name are in ./contract/ by subject (status, audit,
 * approvals, settings), and re-exported from here so every caller imports the contract from one place.
 */
import { z } from 'zod';
import { APPROVAL_ANSWERS } from './approval-view.ts';
import { AuditRecordSchema } from './audit-record.ts';
import { ApprovalsSnapshotSchema, ApprovalViewSchema, CachedApprovalSchema, PendingApprovalSchema } from './contract/approvals.ts';
import { AuditPageRequestSchema, AuditPageSchema, ExportRequestSchema, ExportResultSchema, SaveExportResultSchema, VerifyResultSchema } from './contract/audit.ts';
import { Empty, Id, Ok } from './contract/fields.ts';
import { ClaudeConnectResultSchema, ConfigPath, ConfigViewSchema, DraftConfig, FindingSchema, Fits, SettingsChangeViewSchema, SettingsSchema, SetupStateSchema } from './contract/settings.ts';
import { StatusSchema, UserSchema } from './contract/status.ts';

export * from './contract/approvals.ts';
export * from './contract/audit.ts';
export { ClaudeConnectResultSchema, ConfigViewSchema, FindingSchema, SettingsChangeViewSchema, SettingsSchema, SetupStateSchema, type ConfigView, type FindingView, type Settings, type SettingsChangeView, type SetupState } from './contract/settings.ts';
export * from './contract/status.ts';

interface ChannelSpec<Req extends z.ZodType, Res extends z.ZodType> {
  request: Req;
  response: Res;
  /** Where the channel exists. Approving happens in a native dialog on the desktop, so `approvals.decide` is headless only. */
  hosts: readonly ('electron' | 'headless')[];
}

function channel<Req extends z.ZodType, Res extends z.ZodType>(
  request: Req,
  response: Res,
  hosts: readonly ('electron' | 'headless')[] = ['electron', 'headless'],
): ChannelSpec<Req, Res> {
  return { request, response, hosts };
}

export const CHANNELS = {
  'status.get': channel(Empty, StatusSchema),
  /** Opens the system browser for OIDC sign-in (Authorization Code + PKCE); resolves once signed in. */
  'session.signIn': channel(Empty, z.object({ user: UserSchema })),
  'session.signOut': channel(Empty, Ok),
  'audit.page': channel(AuditPageRequestSchema, AuditPageSchema),
  'audit.get': channel(z.object({ seq: z.number().int().positive() }).strict(), AuditRecordSchema),
  'audit.verify': channel(Empty, VerifyResultSchema),
  'audit.export': channel(ExportRequestSchema, ExportResultSchema),
  /**
   * The desktop app's export: the shell asks where in a native save dialog (the UI never names a
   * path) and the core streams the records into that file, so no history is held as one string.
   */
  'audit.saveExport': channel(ExportRequestSchema, SaveExportResultSchema, ['electron']),
  'approvals.pending': channel(Empty, z.array(PendingApprovalSchema)),
  'approvals.decide': channel(
    z.object({ id: Id, decision: z.enum(APPROVAL_ANSWERS), digest: z.string().max(128) }).strict(),
    Ok,
    ['headless'],
  ),
  'approvals.deny': channel(z.object({ id: Id }).strict(), Ok),
  'approvals.cached': channel(Empty, z.array(CachedApprovalSchema)),
  'approvals.revoke': channel(z.object({ id: Id }).strict(), Ok),
  'settings.get': channel(Empty, SettingsSchema),
  /** Writes Countersign's bridge into Claude Desktop's configuration. */
  'claude.connect': channel(Empty, ClaudeConnectResultSchema),
  /** First run, while nothing is configured: where the configuration goes and what the organisation manages. */
  'setup.get': channel(Empty, SetupStateSchema),
  /** The issuer's discovery, checked the way the doctor does. */
  'setup.discover': channel(
    z.object({ issuer: z.string().max(2000) }).strict(),
    z.object({ findings: z.array(FindingSchema), fits: Fits }),
  ),
  /** The draft validated, then the doctor's checks that need no sign-in (IdP, Vault, roles, databases). */
  'setup.check': channel(
    z.object({ config: DraftConfig }).strict(),
    z.object({ valid: z.boolean(), findings: z.array(FindingSchema), fits: Fits }),
  ),
  /** Validates the draft, writes it owner-only and atomically, and starts the app on it. */
  'setup.save': channel(z.object({ config: DraftConfig }).strict(), z.object({ file: z.string() })),
  /** The person's configuration with the organisation's laid over it, and which fields are managed. */
  'settings.config': channel(Empty, ConfigViewSchema),
  /** Changes fields (null removes one); refuses managed fields, validates, writes atomically; applies at the next start. */
  'settings.save': channel(
    z.object({ changes: z.record(ConfigPath, z.union([z.string().max(2000), z.number(), z.boolean(), z.null()])) }).strict(),
    z.object({ file: z.string(), appliesAt: z.literal('next-start') }),
  ),
} as const;

/**
 * What the core asks of the desktop shell over the utility process's port: only what needs a window
 * or the OS (a native dialog, the system browser). The shell holds no token, so none travels here.
 */
export const SHELL_CHANNELS = {
  /** A native approval dialog; Deny unless the person approves. */
  'approval.prompt': { request: ApprovalViewSchema, response: z.enum(APPROVAL_ANSWERS) },
  /** Where to save an export: the save dialog's path, or none when the person cancels. */
  'shell.chooseExportFile': {
    request: z.object({ filename: z.string().max(200), format: z.enum(['jsonl', 'csv']) }).strict(),
    response: z.object({ path: z.string().max(4096).optional() }),
  },
  /** Brings the window to the front (a call arrived before sign-in, `countersign open`). */
  'shell.present': { request: Empty, response: z.object({}) },
  /** Opens the system browser (sign-in); http(s) only. */
  'shell.openExternal': {
    request: z.object({ url: z.string().max(65_536).regex(/^https?:\/\//, 'Only http(s) URLs open in the browser.') }).strict(),
    response: Ok,
  },
  /** A native dialog before a settings change is written: `apply` only when the person applies it. */
  'shell.confirmSettings': { request: SettingsChangeViewSchema, response: z.enum(['apply', 'cancel']) },
} as const;

/** What the shell asks of the core beyond the UI's channels (which it forwards). */
export const CORE_CHANNELS = {
  /** Finish or cancel the calls in flight (each revokes what it holds), then stop. */
  'core.drain': { request: Empty, response: Ok },
} as const;

export const EVENTS = {
  'status.changed': StatusSchema,
  'audit.appended': AuditRecordSchema,
  'approvals.changed': ApprovalsSnapshotSchema,
} as const;

export type Channel = keyof typeof CHANNELS;
export type EventName = keyof typeof EVENTS;
export type RequestOf<C extends Channel> = z.input<(typeof CHANNELS)[C]['request']>;
export type ParsedRequestOf<C extends Channel> = z.output<(typeof CHANNELS)[C]['request']>;
export type ResponseOf<C extends Channel> = z.output<(typeof CHANNELS)[C]['response']>;
export type EventOf<E extends EventName> = z.output<(typeof EVENTS)[E]>;

export const CHANNEL_NAMES = Object.keys(CHANNELS) as Channel[];
export const EVENT_NAMES = Object.keys(EVENTS) as EventName[];

export function channelsFor(host: 'electron' | 'headless'): Channel[] {
  return CHANNEL_NAMES.filter((name) => CHANNELS[name].hosts.includes(host));
}

export function isChannel(value: unknown): value is Channel {
  return typeof value === 'string' && Object.hasOwn(CHANNELS, value);
}

export function isEventName(value: unknown): value is EventName {
  return typeof value === 'string' && Object.hasOwn(EVENTS, value);
}

/**
 * What a host implements: one function per channel, given the parsed request. Handlers may return
 * the response's input shape; the host parses it with the response schema before it leaves.
 */
export type ContractHandlers = {
  [C in Channel]: (request: ParsedRequestOf<C>) => Promise<z.input<(typeof CHANNELS)[C]['response']>>;
};

/** Subscribes to the app's events; returns the unsubscribe. */
export type EventSubscribe = <E extends EventName>(event: E, listener: (payload: EventOf<E>) => void) => () => void;

/**
 * How the renderer reaches the app: the preload's bridge in Electron, the web transport headless.
 * Rejects with a `{code, message}` AppError.
 */
export interface Transport {
  call<C extends Channel>(channel: C, request: RequestOf<C>): Promise<ResponseOf<C>>;
  on<E extends EventName>(event: E, listener: (payload: EventOf<E>) => void): () => void;
}

/** The object the Electron preload puts on `window` under this name. */
export const PRELOAD_GLOBAL = 'countersign';
