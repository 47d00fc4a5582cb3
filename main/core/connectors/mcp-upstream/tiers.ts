import type { ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import type { Tier } from '../types.ts';
import type { TierRule } from './config.ts';

/** `*` matches any run of characters, `?` one; everything else literally. */
export function globToRegExp(pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

/**
 * The tier of an upstream tool. The first matching policy pattern gives it; with none, tier 1 for a tool
 * the upstream calls read-only and tier 2 otherwise. Annotations are untrusted hints (MCP
 * `ToolAnnotations`): an explicit `readOnlyHint: false` raises to 2 and an explicit `destructiveHint:
 * true` on a non-read-only tool raises to 3, but no annotation ever lowers a tier.
 */
export function tierFor(tool: string, annotations: ToolAnnotations | undefined, rules: readonly TierRule[]): Tier {
  const rule = rules.find((r) => globToRegExp(r.pattern).test(tool));
  const readOnly = annotations?.readOnlyHint === true;
  let tier: Tier = rule ? rule.tier : readOnly ? 1 : 2;
  if (annotations?.readOnlyHint === false && tier < 2) tier = 2;
  if (!readOnly && annotations?.destructiveHint === true && tier < 3) tier = 3;
  return tier;
}
