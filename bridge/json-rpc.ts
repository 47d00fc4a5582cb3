/**
 * The JSON-RPC the bridge reads and writes itself: message ids, the result lines it passes on without
 * parsing, and the answers it gives while no core answers ("Open Countersign and sign in").
 */

export type Json = Record<string, unknown>;
export type Id = string | number;

export const BRIDGE_VERSION = '0.1.0';
export const OFFLINE_MESSAGE = 'Countersign is not running. Open Countersign and sign in, then try again.';
/**
 * Said for each call in flight when the core's connection drops: the core may have finished the call
 * (a write commits before its credential is revoked and its record written), so the model is not told
 * to repeat it blindly.
 */
export const RESTARTED_MESSAGE =
  "Countersign stopped while this call was running, so its answer was lost; the call may have completed. Before repeating a change, ask the person to check this call in Countersign's timeline.";
/** JSON-RPC error code the bridge uses for "the app is not there" (implementation-defined server error range). */
export const APP_NOT_RUNNING_RPC = -32001;

export function isId(value: unknown): value is Id {
  return typeof value === 'string' || typeof value === 'number';
}

/** A map key for an id: `1` and `"1"` are different requests. */
export function key(id: Id): string {
  return `${typeof id}:${id}`;
}

export function errorFor(id: Id, message: string): Json {
  return { jsonrpc: '2.0', id, error: { code: APP_NOT_RUNNING_RPC, message, data: { code: 'APP_NOT_RUNNING' } } };
}

/** A line the bridge queued, parsed for its id and method; undefined when it is not JSON. */
export function parseQueued(line: string): Json | undefined {
  try {
    return JSON.parse(line) as Json;
  } catch {
    return undefined;
  }
}

/**
 * The bridge's own answer to a client message while no core answers; undefined for a notification.
 * A message that is not JSON gets a parse error.
 */
export function offlineAnswer(msg: Json | undefined): Json | undefined {
  if (!msg) return { jsonrpc: '2.0', id: null, error: { code: -32700, message: 'The message is not valid JSON.' } };
  if (!isId(msg.id) || typeof msg.method !== 'string') return undefined;
  const id = msg.id;
  switch (msg.method) {
    case 'initialize': {
      const params = (msg.params ?? {}) as Json;
      return {
        jsonrpc: '2.0',
        id,
        result: {
          protocolVersion: typeof params.protocolVersion === 'string' ? params.protocolVersion : '2025-06-18',
          capabilities: { tools: { listChanged: true } },
          serverInfo: { name: 'countersign', version: BRIDGE_VERSION },
          instructions: OFFLINE_MESSAGE,
        },
      };
    }
    case 'ping':
      return { jsonrpc: '2.0', id, result: {} };
    case 'tools/list':
      return { jsonrpc: '2.0', id, result: { tools: [] } };
    case 'tools/call':
      return { jsonrpc: '2.0', id, result: { isError: true, content: [{ type: 'text', text: OFFLINE_MESSAGE }] } };
    default:
      return errorFor(id, OFFLINE_MESSAGE);
  }
}

export const decoder = new TextDecoder();
const RESULT_START = new TextEncoder().encode('{"result":');
/** The end of a result as the SDK writes it: its `id` last, a number or a string without escapes. */
const RESULT_END = /,"jsonrpc":"2\.0","id":(-?\d{1,15}|"[^"\\]{0,256}")\}\r?\n$/;

/** The id of a line that is a JSON-RPC result written in the SDK's key order; undefined for any other line. */
export function resultId(line: Uint8Array): Id | undefined {
  if (line.length < RESULT_START.length + 24) return undefined;
  for (let i = 0; i < RESULT_START.length; i++) if (line[i] !== RESULT_START[i]) return undefined;
  const tail = decoder.decode(line.subarray(Math.max(RESULT_START.length, line.length - 300)));
  const m = RESULT_END.exec(tail);
  if (!m) return undefined;
  const raw = m[1]!;
  return raw.startsWith('"') ? raw.slice(1, -1) : Number(raw);
}
