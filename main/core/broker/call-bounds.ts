/**
 * What a client sends and what a call answers, bounded: a tool call's arguments, tool name and request
 * id are chosen by the client (a model can make any of them megabytes long, or thousands of levels
 * deep), and the record, the journal and the log keep them; a result larger than Claude Desktop
 * accepts would be refused there, after the call ran, with nothing said of why.
 */
import { createHash } from 'node:crypto';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { MAX_NESTING, nestsDeeperThan } from '../../../common/canonical-json.ts';
import { AppError } from '../../../common/errors.ts';

/** The most a call's arguments may take as JSON: SQL of 100,000 characters and its values fit many times. */
const MAX_ARGS_BYTES = 256 * 1024;
/** No tool Countersign lists has a longer name (Claude Desktop accepts 64 characters). */
const MAX_TOOL_NAME = 64;
/** Request ids longer than this are kept as their start and their digest. */
const MAX_REQUEST_ID = 128;
/**
 * The largest result the broker answers with, as JSON: Claude Desktop refuses a tool result over 1 MB
 * ("Tool result is too large. Maximum size is 1MB.", https://github.com/anthropics/claude-code/issues/66519),
 * after the call has run, and the model is told nothing it can act on. JSON bytes bound every measure
 * Claude could take of the result (characters, bytes of its text). The bridge's own limit on a line
 * (MAX_MESSAGE_BYTES) lies well above.
 */
export const MAX_ANSWER_BYTES = 1_000_000;

const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');

/**
 * Why a call's arguments are neither run nor recorded, or undefined when they are fit: nested deeper
 * than any real call's (the record's validation, redaction and serialisation recurse into them), or
 * larger (every timeline page that shows the record would carry them).
 */
export function unfitArguments(args: Record<string, unknown>): AppError | undefined {
  if (nestsDeeperThan(args, MAX_NESTING))
    return new AppError('INPUT_INVALID', `The call's arguments nest more than ${MAX_NESTING} levels deep, so Countersign neither ran nor recorded them. Send flatter arguments.`);
  const json = JSON.stringify(args);
  const bytes = Buffer.byteLength(json);
  if (bytes <= MAX_ARGS_BYTES) return undefined;
  return new AppError(
    'INPUT_INVALID',
    `The call's arguments are ${bytes} bytes of JSON (sha256:${sha256(json)}), more than the ${MAX_ARGS_BYTES} Countersign runs and records, so it neither ran nor recorded them. Send less in one call.`,
  );
}

/** The tool's name as the journal, the record, the log and a refusal give it: a longer one than any tool has is cut. */
export function shownToolName(name: string): string {
  return name.length <= MAX_TOOL_NAME ? name : `${name.slice(0, MAX_TOOL_NAME)}… (${name.length} characters)`;
}

/** A JSON-RPC request id as the journal and the record keep it: past 128 characters, its start and its SHA-256, still unique. */
export function recordedId(id: string | number): string | number {
  if (typeof id === 'number' || id.length <= MAX_REQUEST_ID) return id;
  return `${id.slice(0, 64)}… (${id.length} characters, sha256:${sha256(id)})`;
}

/** Why a tool's result cannot be answered (larger than Claude Desktop accepts), or undefined when it can. */
export function unanswerable(result: CallToolResult): AppError | undefined {
  const bytes = Buffer.byteLength(JSON.stringify(result));
  if (bytes <= MAX_ANSWER_BYTES) return undefined;
  return new AppError(
    'RESULT_TOO_LARGE',
    `The tool's result is ${bytes} bytes, more than the ${MAX_ANSWER_BYTES} Claude Desktop accepts in one answer, so Countersign withheld it. Ask for less (fewer rows or columns, a narrower search).`,
  );
}
