/**
 * The names Countersign gives an upstream's tools. Claude Desktop checks every tool name of a server
 * against `^[a-zA-Z0-9_-]{1,64}$` and, when one fails, withholds the whole server's tools; the MCP spec
 * allows more (dots, slashes, 128 characters), so an upstream's own names cannot be passed on as they are.
 *
 * `<upstream>__<tool>`: the upstream's name (which config.ts keeps free of `__` and of a trailing `_`,
 * so the first `__` always ends it) and the tool's name as it is when it already fits. A tool name that
 * does not fit (characters outside the set, or too long) is rewritten: every other character becomes
 * `_`, the result is cut to length, and 8 hex digits of the SHA-256 of the original name are appended,
 * so the name is the same at every listing and two rewritten names differ. Pure functions, no state.
 */
import { createHash } from 'node:crypto';

/** What Claude Desktop accepts as a tool name (and Claude's API: `tools.N.name`). */
export const CLAUDE_TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;
const MAX_TOOL_NAME = 64;
/** Between the upstream's name and its tool's. */
export const UPSTREAM_SEPARATOR = '__';
const HASH_HEX = 8;

/** The name Countersign lists for `tool` of `upstream`. */
export function exposedToolName(upstream: string, tool: string): string {
  const prefix = `${upstream}${UPSTREAM_SEPARATOR}`;
  const plain = prefix + tool;
  if (tool.length > 0 && CLAUDE_TOOL_NAME.test(plain)) return plain;
  const hash = createHash('sha256').update(tool, 'utf8').digest('hex').slice(0, HASH_HEX);
  const room = MAX_TOOL_NAME - prefix.length - 1 - HASH_HEX;
  const kept = tool.replace(/[^a-zA-Z0-9_-]/g, '_').slice(0, Math.max(0, room));
  return kept.length > 0 ? `${prefix}${kept}_${hash}` : `${prefix}${hash}`;
}

/** Whether an upstream name keeps `<upstream>__` unambiguous: no `__` inside, no `_` at the end. */
export function upstreamNameProblem(name: string): string | undefined {
  if (name.includes(UPSTREAM_SEPARATOR)) return `"${UPSTREAM_SEPARATOR}" separates an upstream's name from its tools' names, so an upstream name cannot contain it`;
  if (name.endsWith('_')) return `an upstream name cannot end with "_": its tools' names would run into the "${UPSTREAM_SEPARATOR}" separator`;
  return undefined;
}
