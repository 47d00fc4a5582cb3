import type { ToolAnnotations } from '@modelcontextprotocol/sdk/types.js';
import type { Tier } from '../types.ts';
import type { TierRule } from './config.ts';

/**
 * The tool names Countersign governs: the characters MCP allows in a tool name (revision 2025-11-25,
 * 1–128 of `A-Z a-z 0-9 _ - .`). A name with anything else (a newline, a zero-width or fullwidth
 * character) could look like a name the policy matches while being another; such a tool is blocked.
 */
const GOVERNED_TOOL_NAME = /^[A-Za-z0-9_.-]{1,128}$/;

/**
 * `*` matches any run of characters, `?` one; everything else literally (a `.` is a dot). The pattern
 * matches the whole name, ignoring ASCII case, so `Delete_User` is `delete_user` to the policy.
 */
export function globToRegExp(pattern: string): RegExp {
  const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[\\s\\S]*').replace(/\?/g, '[\\s\\S]');
  return new RegExp(`^(?:${body})$`, 'i');
}

/**
 * The tier of an upstream tool: the first matching policy pattern gives it, and with none it is tier 2
 * (the person approves). Annotations are the upstream's own untrusted claims (MCP `ToolAnnotations`):
 * they can raise a tier (an explicit `readOnlyHint: false` to 2, `destructiveHint: true` to 3) but
 * never lower it; only the policy makes a tool tier 1. A name outside `GOVERNED_TOOL_NAME` is tier 4.
 */
export function tierFor(tool: string, annotations: ToolAnnotations | undefined, rules: readonly TierRule[]): Tier {
  if (!GOVERNED_TOOL_NAME.test(tool)) return 4;
  const rule = rules.find((r) => globToRegExp(r.pattern).test(tool));
  let tier: Tier = rule ? rule.tier : 2;
  if (annotations?.readOnlyHint === false && tier < 2) tier = 2;
  if (annotations?.readOnlyHint !== true && annotations?.destructiveHint === true && tier < 3) tier = 3;
  return tier;
}
