import { z } from 'zod';
import { AppError } from '../../../../common/errors.ts';
import type { Tier } from '../types.ts';
import { upstreamNameProblem } from './tool-names.ts';

const TierSchema = z.union([z.literal(1), z.literal(2), z.literal(3), z.literal(4)]);

/**
 * One remote MCP server behind Countersign. `auth: "obo"` upstreams accept IdP-issued tokens for their
 * own audience (RFC 9728 metadata, per-call RFC 8693 exchange with `resource` = the URL); `auth:
 * "api-key"` upstreams want a static key, which lives in Vault KV v2 and is read per call.
 */
export const UpstreamConfigSchema = z
  .object({
    /** Namespace of its tools (`<name>__<tool>`, tool-names.ts). */
    name: z
      .string()
      .regex(/^[a-z][a-z0-9_-]{0,31}$/, 'an upstream name is 1 to 32 lowercase letters, digits, "_" or "-", starting with a letter')
      .superRefine((name, ctx) => {
        const problem = upstreamNameProblem(name);
        if (problem) ctx.addIssue({ code: 'custom', message: problem });
      }),
    /** The Streamable HTTP endpoint; also the RFC 8707 `resource` and the audience the upstream checks. */
    url: z.url(),
    auth: z.enum(['obo', 'api-key']).default('obo'),
    /** When set, the upstream's metadata must list this issuer among its `authorization_servers`. */
    issuer: z.string().optional(),
    apiKey: z
      .object({
        audience: z.string().min(1).default('countersign-vault'),
        authMount: z.string().min(1).default('jwt'),
        role: z.string().min(1).default('upstream-apikey'),
        kvMount: z.string().min(1).default('secret'),
        path: z.string().min(1),
        field: z.string().min(1).default('api_key'),
        header: z.string().regex(/^[A-Za-z0-9-]+$/).default('X-API-Key'),
      })
      .strict()
      .optional(),
    /**
     * Glob patterns on the upstream's tool names (`*` any run, `?` one character, `.` a dot; whole
     * names, ASCII case ignored); the first match gives the tier. Without a match a tool is tier 2:
     * only a pattern makes it tier 1, whatever the upstream's annotations say.
     */
    tools: z
      .array(
        z
          .object({
            pattern: z.string().regex(/^[A-Za-z0-9_.*?-]{1,128}$/, 'a tool name pattern: letters, digits, "_", "-", "." and the wildcards "*" and "?"'),
            tier: TierSchema,
          })
          .strict(),
      )
      .default([]),
    /** Whole-call limit (connect, call, answer). */
    timeoutMs: z.number().int().positive().max(600_000).default(30_000),
    /** Plain http is refused unless the upstream is on a loopback address and this is set (the lab). */
    allowInsecureHttpForLoopbackOnly: z.boolean().default(false),
  })
  .strict()
  .refine((c) => c.auth !== 'api-key' || c.apiKey !== undefined, { message: 'an api-key upstream needs apiKey.path' });

export type UpstreamConfig = z.output<typeof UpstreamConfigSchema>;
export type UpstreamConfigInput = z.input<typeof UpstreamConfigSchema>;

export interface TierRule {
  pattern: string;
  tier: Tier;
}

/** Plain http is refused unless the upstream is on loopback and `allowInsecureHttpForLoopbackOnly` says so (the lab). */
export function checkTransportSecurity(config: UpstreamConfig): void {
  const url = new URL(config.url);
  if (url.protocol === 'https:') return;
  const loopback = ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname);
  if (url.protocol === 'http:' && loopback && config.allowInsecureHttpForLoopbackOnly) {
    process.emitWarning(`Upstream ${config.name} uses plain http on loopback (allowInsecureHttpForLoopbackOnly).`);
    return;
  }
  throw new AppError('CONFIG_INVALID', `The upstream ${config.name} must use https.`);
}
