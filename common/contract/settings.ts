/** Settings, first-run setup and the doctor's findings as the UI shows them; none holds a secret. */
import { z } from 'zod';

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
export const Fits = z.enum(['rar', 'scopes', 'unknown']);
/** A draft of the configuration file (main/core/config/config.ts validates it; it holds no secret). */
export const DraftConfig = z.record(z.string(), z.unknown());

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
export const ConfigPath = z.string().max(100).regex(/^[a-zA-Z][a-zA-Z0-9]*(\.[a-zA-Z][a-zA-Z0-9]*){0,3}$/);

/** The longest value a settings change shows: a 2,000-character string as JSON, escapes included, fits. */
export const SHOWN_VALUE_CHARS = 16_000;

/**
 * A settings change as the desktop shell's native dialog shows it before anything is written: each
 * field with its value in the file and the value asked for, as JSON (null: not in the file, or removed).
 */
export const SettingsChangeViewSchema = z
  .object({
    file: z.string().max(4096),
    changes: z
      .array(z.object({ path: ConfigPath, from: z.string().max(SHOWN_VALUE_CHARS).nullable(), to: z.string().max(SHOWN_VALUE_CHARS).nullable() }).strict())
      .min(1)
      .max(100),
  })
  .strict();
export type SettingsChangeView = z.infer<typeof SettingsChangeViewSchema>;

export const ClaudeConnectResultSchema = z.object({
  configured: z.boolean(),
  configPath: z.string(),
  /** What the person should do next ("Restart Claude Desktop to load Countersign"). */
  message: z.string(),
});
