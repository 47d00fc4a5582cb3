/**
 * The one contract between the app and its UI: every channel the renderer may call, with zod request
 * and response schemas, and every event the app pushes. The Electron preload exposes exactly these
 * channels, the headless web host validates every request against them, and both hosts parse every
 * response with them before it leaves, so an unknown field (a token that slipped into a handler's
 * return value) is stripped rather than sent. Nothing here carries a token, secret, verifier or
 * password: the renderer never holds one. `SHELL_CHANNELS` and `CORE_CHANNELS` are the two directions
 * between the desktop shell and the core's utility process; common/channel.ts serves every table.
 */
import { z } from 'zod';
import type { ApprovalDecision, ApprovalView } from './approval-view.ts';
import { AuditRecordSchema, OUTCOMES, RECORD_KINDS } from './audit-record.ts';

const Empty = z.object({}).strict();
const Ok = z.object({ ok: z.literal(true) });
const Id = z.string().min(1).max(200);
const IsoTime = z.string().max(40);

export const UserSchema = z.object({ sub: z.string(), name: z.string().optional(), email: z.string().optional() });
export type User = z.infer<typeof UserSchema>;

export const BridgeSessionSchema = z.object({
  id: z.string(),
  /** `clientInfo` as the MCP client describes itself: self-asserted. */
  clientName: z.string().optional(),
  clientVersion: z.string().optional(),
  /** The peer process as the OS identifies it, where it can. */
  pid: z.number().int().optional(),
  connectedAt: IsoTime,
  calls: z.number().int().nonnegative().default(0),
});
export type BridgeSession = z.infer<typeof BridgeSessionSchema>;

const Reachability = z.enum(['ok', 'unreachable', 'sealed', 'unknown']);

export const StatusSchema = z.object({
  host: z.enum(['electron', 'headless']),
  version: z.string(),
  /** The app runs against the local identity lab: the UI shows a banner. */
  demo: z.boolean(),
  user: UserSchema.nullable(),
  /**
   * The sign-in session. While signing in, `url` is the sign-in page (shown where no browser could be
   * opened) and `userCode` the device code; `reason` says why a sign-in is needed. Never a token.
   */
  session: z
    .object({
      state: z.enum(['signed_out', 'signing_in', 'signed_in', 'needs_sign_in']),
      url: z.string().max(4000).optional(),
      userCode: z.string().max(100).optional(),
      reason: z.string().max(1000).optional(),
      /** False when no keychain is usable: the sign-in lasts until the app stops. */
      persistent: z.boolean().optional(),
    })
    .default({ state: 'signed_out' }),
  /** `delegation`: the profile every exchange runs under (`rar` or `scopes`), shown so none reads as stronger than it is. */
  idp: z.object({ issuer: z.string(), state: Reachability, delegation: z.enum(['rar', 'scopes']).default('rar') }),
  /** Vault as its `sys/health` says it is (`unknown` only until the first answer). */
  vault: z.object({
    address: z.string(),
    state: z.enum(['ok', 'sealed', 'standby', 'uninitialized', 'unreachable', 'unknown']),
    initialized: z.boolean().optional(),
    sealed: z.boolean().optional(),
    version: z.string().max(100).optional(),
  }),
  claudeDesktop: z.object({
    configured: z.boolean(),
    connected: z.boolean(),
    /** A connected session was given other tools than Countersign now offers: Claude Desktop must be restarted to see them. */
    restartNeeded: z.boolean().optional(),
  }),
  bridgeSessions: z.array(BridgeSessionSchema),
  pendingApprovals: z.number().int().nonnegative().default(0),
  /** Tool calls on the audit timeline (every outcome). */
  calls: z.number().int().nonnegative().default(0),
  /** Nothing is configured yet: the UI shows the setup screen and the other channels refuse. */
  setup: z.boolean().optional(),
});
export type Status = z.infer<typeof StatusSchema>;

export const TierSchema = z.union([z.literal(1), z.literal(2), z.literal(3), z.literal(4)]);

/** Filters of the timeline. Every field narrows; none widens. */
export const AuditFilterSchema = z
  .object({
    outcome: z.array(z.enum(OUTCOMES)).max(OUTCOMES.length).optional(),
    kind: z.array(z.enum(RECORD_KINDS)).max(RECORD_KINDS.length).optional(),
    tier: z.array(TierSchema).max(4).optional(),
    tool: z.string().max(200).optional(),
    /** Matches the user's `sub`, name or email. */
    user: z.string().max(200).optional(),
    from: IsoTime.optional(),
    to: IsoTime.optional(),
    /** Free text over tool, target, summary, error and join keys. */
    search: z.string().max(500).optional(),
  })
  .strict();
export type AuditFilter = z.infer<typeof AuditFilterSchema>;

export const AuditPageRequestSchema = z
  .object({
    filter: AuditFilterSchema.default({}),
    /**
     * Only records with `seq` below this. The timeline pins it to the head it first saw so records
     * appended while a person scrolls do not shift the rows under them.
     */
    before: z.number().int().positive().optional(),
    /** Rows to skip after `before` and the filter applied, newest first (random access for a virtual list). */
    offset: z.number().int().nonnegative().max(10_000_000).default(0),
    limit: z.number().int().min(1).max(500).default(100),
  })
  .strict();
export type AuditPageRequest = z.input<typeof AuditPageRequestSchema>;

export const AuditPageSchema = z.object({
  /** Newest first. */
  records: z.array(AuditRecordSchema),
  /** Records matching the filter below `before`, for the list's length; at most the count cap when `total_capped`. */
  total: z.number().int().nonnegative(),
  /** More records match than `total`: the core stopped counting at its cap (the timeline says "10,000+"). */
  total_capped: z.boolean(),
  /** The newest `seq` in the store when the page was read. */
  head: z.number().int().nonnegative(),
});
export type AuditPage = z.infer<typeof AuditPageSchema>;

export const VerifyResultSchema = z.object({
  ok: z.boolean(),
  checked: z.number().int().nonnegative(),
  /** The first record edited, deleted or reordered, when the chain is broken. */
  firstBad: z.object({ seq: z.number().int(), reason: z.string().max(500) }).nullable(),
  /** Whether the head was compared with a signed checkpoint kept off the machine. */
  anchored: z.boolean(),
  verifiedAt: IsoTime,
  /** The last record the walk reached: records after it were appended since. */
  head: z.object({ seq: z.number().int(), hash: z.string() }).nullable().optional(),
});
export type VerifyResult = z.infer<typeof VerifyResultSchema>;

export const ExportRequestSchema = z.object({ format: z.enum(['jsonl', 'csv']), filter: AuditFilterSchema.default({}) }).strict();
export const ExportResultSchema = z.object({ filename: z.string().max(200), mediaType: z.string().max(100), content: z.string() });
export type ExportResult = z.infer<typeof ExportResultSchema>;
/** An export written to a file the person chose in a native save dialog (the desktop app). */
export const SaveExportResultSchema = z.union([
  z.object({ saved: z.literal(false) }),
  z.object({ saved: z.literal(true), path: z.string().max(4096), records: z.number().int().nonnegative(), bytes: z.number().int().nonnegative() }),
]);
export type SaveExportResult = z.infer<typeof SaveExportResultSchema>;

/** One call waiting for a person's decision, described exactly as it will run. */
export const PendingApprovalSchema = z.object({
  id: Id,
  tool: z.string(),
  target: z.string(),
  tier: z.union([z.literal(2), z.literal(3)]),
  /** Why this tier ("bounded UPDATE of appointments"). */
  reason: z.string(),
  authorization_details: z.array(z.record(z.string(), z.unknown())),
  args: z.record(z.string(), z.unknown()),
  /** The exact bytes that will run (SQL text, canonical JSON of upstream arguments). */
  bytes: z.string(),
  /** SHA-256 of `bytes`, hex: the approval binds to it. */
  digest: z.string(),
  client: z.object({ name: z.string().optional(), version: z.string().optional(), pid: z.number().optional() }).optional(),
  requestedAt: IsoTime,
  expiresAt: IsoTime,
});
export type PendingApproval = z.infer<typeof PendingApprovalSchema>;

/** A tier-2 approval still covering writes of its class (docs/call-chain.md, "What each tier admits (SQL)"). */
export const CachedApprovalSchema = z.object({
  id: Id,
  tool: z.string(),
  target: z.string(),
  statementClass: z.string(),
  targets: z.array(z.string()),
  /** What it lets a call change, `<class> <table>` each. */
  changes: z.array(z.string()).optional(),
  rowCeiling: z.number().int().optional(),
  grantedAt: IsoTime,
  expiresAt: IsoTime,
  uses: z.number().int().nonnegative(),
});
export type CachedApproval = z.infer<typeof CachedApprovalSchema>;

export const ApprovalsSnapshotSchema = z.object({ pending: z.array(PendingApprovalSchema), cached: z.array(CachedApprovalSchema) });
export type ApprovalsSnapshot = z.infer<typeof ApprovalsSnapshotSchema>;

export const SettingsSchema = z.object({
  idp: z.object({
    issuer: z.string(),
    clientId: z.string(),
    scopes: z.array(z.string()),
    dpop: z.boolean(),
  }),
  vault: z.object({
    address: z.string(),
    authMount: z.string(),
    roles: z.array(z.string()),
  }),
  /** The policy file as written, shown read-only. */
  policy: z.object({ path: z.string(), text: z.string().max(200_000) }),
  claudeDesktop: z.object({ configPath: z.string().nullable(), configured: z.boolean() }),
  dataDir: z.string(),
  demo: z.boolean(),
  /** Fields the organisation's managed configuration sets (dotted paths, `idp.issuer`), and where it was read; null when none. */
  managed: z.object({ where: z.string(), fields: z.array(z.string()) }).nullable().default(null),
});
export type Settings = z.infer<typeof SettingsSchema>;

/** One of the doctor's findings (main/core/doctor), as a sentence and what to do about it. */
export const FindingSchema = z.object({
  party: z.enum(['idp', 'delegation', 'exchange', 'vault', 'database', 'upstream', 'configuration']),
  check: z.string().max(200),
  status: z.enum(['ok', 'warn', 'fail', 'skip']),
  says: z.string().max(2000),
  fix: z.string().max(2000).optional(),
});
export type FindingView = z.infer<typeof FindingSchema>;
const Fits = z.enum(['rar', 'scopes', 'unknown']);
/** A draft of the configuration file (main/core/config/config.ts validates it; it holds no secret). */
const DraftConfig = z.record(z.string(), z.unknown());

export const SetupStateSchema = z.object({
  /** Where the configuration will be written. */
  file: z.string(),
  /** The organisation's configuration, when one is installed: its fields are shown and cannot be changed. */
  managed: z.object({ where: z.string(), fields: z.array(z.string()), values: DraftConfig }).nullable(),
});
export type SetupState = z.infer<typeof SetupStateSchema>;

/** The configuration in force, for the settings screen to show and edit, and which fields are the organisation's. */
export const ConfigViewSchema = z.object({
  file: z.string(),
  config: DraftConfig,
  managed: z.object({ where: z.string(), fields: z.array(z.string()) }).nullable(),
});
export type ConfigView = z.infer<typeof ConfigViewSchema>;
/** A field of the configuration by dotted path (`vault.address`): letters and digits only, so no `__proto__`. */
const ConfigPath = z.string().max(100).regex(/^[a-zA-Z][a-zA-Z0-9]*(\.[a-zA-Z][a-zA-Z0-9]*){0,3}$/);

export const ClaudeConnectResultSchema = z.object({
  configured: z.boolean(),
  configPath: z.string(),
  /** What the person should do next ("Restart Claude Desktop to load Countersign"). */
  message: z.string(),
});

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
    z.object({ id: Id, decision: z.enum(['approve', 'deny']), digest: z.string().max(128) }).strict(),
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

/** What an approval prompt shows (common/approval-view.ts), as the shell receives it from the core. */
export const ApprovalViewSchema = z.object({
  id: Id,
  tier: z.union([z.literal(2), z.literal(3)]),
  tool: z.string(),
  target: z.string(),
  summary: z.string(),
  authorization: z.array(z.string()),
  argumentsText: z.string(),
  digest: z.string().max(200),
  scope: z.string().optional(),
  requestedAt: IsoTime,
  expiresAt: IsoTime,
}) satisfies z.ZodType<ApprovalView>;

/**
 * What the core asks of the desktop shell over the utility process's port: only what needs a window
 * or the OS (a native dialog, the system browser). The shell holds no token, so none travels here.
 */
export const SHELL_CHANNELS = {
  /** A native approval dialog; Deny unless the person approves. */
  'approval.prompt': { request: ApprovalViewSchema, response: z.enum(['approve', 'deny']) satisfies z.ZodType<ApprovalDecision> },
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
