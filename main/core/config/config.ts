/**
 * The app's configuration file (`<dataDir>/config.json`, or `--config FILE`): which IdP, which Vault,
 * which targets and which policy. Validated with a clear error per bad field. With nothing configured
 * the app says so and asks; it never falls back to the lab.
 */
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { AppError } from '../../../common/errors.ts';
import { IdpConfigSchema, LOOPBACK_HOSTS } from '../auth/config.ts';
import { UpstreamConfigSchema } from '../connectors/mcp-upstream/config.ts';
import { VAULT_MODES } from '../vault/agent-mode.ts';
import { applyManaged, readManagedConfig } from './managed.ts';

const Url = z.url();

export const AppConfigSchema = z
  .object({
    /** Same fields as main/core/auth/config.ts validates (issuer, client, scopes, resource, DPoP…). */
    idp: IdpConfigSchema,
    vault: z
      .object({
        address: Url,
        namespace: z.string().min(1).optional(),
        caCertFile: z.string().min(1).optional(),
        authMount: z.string().min(1).default('jwt'),
        /**
         * `jwt-login`: the OBO logs in at `authMount` (Vault Community, OpenBao). `agent`: Vault
         * Enterprise 2.0.3+ native agent mode, the OBO itself is the token (docs/vault.md).
         */
        mode: z.enum(VAULT_MODES).default('jwt-login'),
        timeoutMs: z.number().int().positive().max(120_000).default(10_000),
        /** Plain http to a Vault on 127.0.0.1 or [::1] (the lab). Insecure; off by default; logged at start. */
        allowInsecureHttpForLoopbackOnly: z.boolean().default(false),
      })
      .strict()
      .superRefine((v, ctx) => {
        // A malformed address is already an issue of its own field; zod runs this refinement anyway.
        if (!URL.canParse(v.address)) return;
        const url = new URL(v.address);
        if (url.protocol === 'https:') return;
        if (url.protocol !== 'http:') {
          ctx.addIssue({ code: 'custom', path: ['address'], message: 'must be an https URL' });
        } else if (!v.allowInsecureHttpForLoopbackOnly) {
          ctx.addIssue({ code: 'custom', path: ['address'], message: 'must use https (plain http is allowed only for a loopback Vault with allowInsecureHttpForLoopbackOnly)' });
        } else if (!LOOPBACK_HOSTS.has(url.hostname)) {
          ctx.addIssue({ code: 'custom', path: ['address'], message: 'may use plain http only on a loopback address (127.0.0.1 or [::1])' });
        }
      }),
    /** The policy file (JSON with comments): tools and tables → tier, RAR template, limits. */
    policyFile: z.string().min(1),
    postgres: z
      .object({
        host: z.string().min(1),
        port: z.number().int().min(1).max(65535),
        database: z.string().min(1),
        connectTimeoutMs: z.number().int().positive().optional(),
        /**
         * TLS to the database, as libpq names it: `disable`, `require` (encrypted, server not
         * verified), `verify-ca` (its certificate chains to `sslrootcert`), `verify-full` (and names
         * `host`). Default: `verify-full` unless `host` is a loopback address, where it is `disable`.
         */
        sslmode: z.enum(['disable', 'require', 'verify-ca', 'verify-full']).optional(),
        /** PEM file of the CA that signed the database's certificate; the system's CAs when absent. */
        sslrootcert: z.string().min(1).optional(),
      })
      .strict()
      .superRefine((p, ctx) => {
        if (p.sslmode === 'verify-ca' && !p.sslrootcert) {
          ctx.addIssue({ code: 'custom', path: ['sslrootcert'], message: 'is needed with sslmode verify-ca (the CA the certificate must chain to)' });
        }
      })
      .optional(),
    upstreams: z.array(UpstreamConfigSchema).default([]),
    approvals: z
      .object({
        tier2CacheMinutes: z.number().positive().max(24 * 60).default(30),
        // An approval must time out before the call's 55 s deadline (mcp-session.ts) with room for the
        // exchange, Vault and the statement after it: at 59 the deadline answered first.
        timeoutSeconds: z.number().positive().max(50).default(45),
        /**
         * Who asks the person for a tier-3 call. `local`: Countersign's own prompt, every call.
         * `idp-when-offered`: the identity provider's push (IBM Verify style, the call digest as
         * transaction data) replaces the local prompt, and a call whose OBO does not prove that push
         * is refused; use it only with an IdP whose policy steps up every tier-3 call.
         */
        tier3: z.enum(['local', 'idp-when-offered']).default('local'),
      })
      .strict()
      .default({ tier2CacheMinutes: 30, timeoutSeconds: 45, tier3: 'local' }),
    audit: z
      .object({
        anchorUrl: Url.optional(),
        checkpointEvery: z.number().int().positive().optional(),
        /** Redaction at write (docs/audit.md): arguments kept as an HMAC, and masking or refusing a record that carries a secret. */
        redaction: z
          .object({
            hmacArgs: z.array(z.string().min(1)).default([]),
            onSecret: z.enum(['mask', 'refuse']).default('mask'),
          })
          .strict()
          .optional(),
      })
      .strict()
      .default({}),
    /** Written by the lab's demo launcher only: the UI shows a banner and every audit record is tagged. */
    demo: z.boolean().default(false),
  })
  .strict()
  .superRefine((c, ctx) => {
    // Vault's agent mode narrows each request by the OBO's vault:path_access entries: they travel as RAR.
    if (c.vault.mode === 'agent' && c.idp.delegation !== 'rar') {
      ctx.addIssue({ code: 'custom', path: ['vault', 'mode'], message: 'agent mode needs idp.delegation "rar": the Vault paths travel in the OBO\'s authorization_details' });
    }
  });

export type AppConfig = z.output<typeof AppConfigSchema>;
export type AppConfigInput = z.input<typeof AppConfigSchema>;

export function parseAppConfig(value: unknown, source = 'configuration'): AppConfig {
  const result = AppConfigSchema.safeParse(value);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const field = issue.path.join('.') || '(top level)';
    throw new AppError('CONFIG_INVALID', `${source}: ${field}: ${issue.message}`);
  }
  return result.data;
}

export async function loadAppConfig(file: string): Promise<AppConfig> {
  return parseAppConfig(await readPersonConfig(file), file);
}

/** The configuration in force and, when the organisation manages some of it, where and which fields. */
export interface LoadedConfig {
  config: AppConfig;
  managed?: { where: string; fields: string[] };
}

/**
 * The person's configuration file with the organisation's managed configuration laid over it
 * (managed.ts): a managed field wins whatever the person's file says. With a managed configuration
 * and no file of the person's, the managed one alone is the configuration.
 */
export async function loadConfiguration(file: string, o: { platform: NodeJS.Platform; env: Readonly<Record<string, string | undefined>> }): Promise<LoadedConfig> {
  const managed = await readManagedConfig(o);
  if (!managed) return { config: await loadAppConfig(file) };
  const person = await readPersonConfig(file).catch((error: unknown) => {
    if (AppError.is(error, 'CONFIG_MISSING')) return {};
    throw error;
  });
  const { merged, fields } = applyManaged(person, managed.values);
  return { config: parseAppConfig(merged, `${file} with the managed configuration ${managed.where}`), managed: { where: managed.where, fields } };
}

async function readPersonConfig(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new AppError(
        'CONFIG_MISSING',
        `Countersign is not configured yet: ${file} does not exist. Write it (see docs/identity-providers.md and docs/vault.md), or try the local lab with \`npm run demo\`.`,
      );
    }
    throw new AppError('CONFIG_INVALID', `${file} could not be read.`, { cause: error });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new AppError('CONFIG_INVALID', `${file} is not valid JSON: ${(error as Error).message}`);
  }
  return json;
}
