/**
 * Makes what an approval prompt shows safe to read: the arguments as canonical JSON, with control,
 * bidirectional and invisible characters made visible, and nothing that can pass for a line of the
 * prompt itself (newlines are shown as ⏎, never broken). Nothing of what will run is cut: the whole
 * statement and every bound value reach the prompt, which pages or scrolls them. What the prompt says
 * comes from policy and the parsed call; these helpers only make the call's own bytes legible.
 */
import { AppError } from '../../../common/errors.ts';


/** Characters that reorder, hide or fake text: C0/C1 controls, bidi embeddings/isolates/marks, zero-width. */
// eslint-disable-next-line no-control-regex, no-misleading-character-class -- matching these characters is the point
const SUSPICIOUS = /[\u0000-\u0008\u000B-\u001F\u007F-\u009F\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180E\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\u3164\uFE00-\uFE0F\uFEFF\uFFA0\uFFF9-\uFFFB]/gu;

const MAX_VALUE_CHARS = 400;
/** Deeper arguments are refused rather than shown in part (JSON from an MCP client nests far less). */
const MAX_DEPTH = 64;

function codePointLabel(ch: string): string {
  return `⟨U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}⟩`;
}

/** One string, made visible: controls and invisibles become ⟨U+XXXX⟩, line breaks ⏎, tabs ⇥. */
export function makeVisible(text: string): string {
  return text
    .replace(/\r\n|\n|\r|\u2028|\u2029/g, '⏎')
    .replace(/\t/g, '⇥')
    .replace(SUSPICIOUS, codePointLabel);
}

export function truncate(text: string, max = MAX_VALUE_CHARS): string {
  const chars = [...text];
  if (chars.length <= max) return text;
  return `${chars.slice(0, max).join('')}… (+${chars.length - max} more characters)`;
}

/** A tool or table name as the prompt shows it: ASCII stays, anything else is spelled out. */
export function visibleName(name: string): string {
  return [...name].map((ch) => (/^[\x20-\x7E]$/.test(ch) ? ch : codePointLabel(ch))).join('');
}

function canonical(value: unknown, depth = 0): unknown {
  if (depth > MAX_DEPTH) {
    throw new AppError('INPUT_INVALID', `The arguments nest deeper than ${MAX_DEPTH} levels, too deep to show for approval; the call was not run.`);
  }
  if (typeof value === 'string') return makeVisible(value);
  if (Array.isArray(value)) return value.map((v) => canonical(v, depth + 1));
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) out[makeVisible(key)] = canonical((value as Record<string, unknown>)[key], depth + 1);
    return out;
  }
  return value;
}

/** The arguments as canonical JSON (sorted keys), every string made visible, whole. */
export function renderArguments(args: Record<string, unknown>): string {
  return JSON.stringify(canonical(args), null, 2);
}
