/**
 * The wire between the bridge and the core's local socket: a mutual HMAC challenge-response over the
 * per-start secret, then newline-delimited JSON-RPC (the MCP stdio framing).
 *
 *   bridge → core  {"t":"countersign/hello","v":1,"nonce":Nc}            ("purpose":"control": see below)
 *   core → bridge  {"t":"countersign/challenge","v":1,"nonce":Ns,"proof":HMAC(secret,"countersign/1|server|Nc|Ns")}
 *   bridge → core  {"t":"countersign/proof","proof":HMAC(secret,"countersign/1|client|Nc|Ns")}
 *   core → bridge  {"t":"countersign/welcome","v":1}   or {"t":"countersign/refused","code","message"}
 *
 * The core proves itself first, so a process squatting on the socket path learns only a random nonce
 * and is refused before the bridge sends anything else; the secret itself never travels. Once the
 * core has proved itself, the bridge may send its first MCP lines in the same write as its proof,
 * without waiting for the welcome: the core reads them only after the proof passes, and drops them
 * with the connection when it does not. The role label
 * in each proof stops a reflected proof from passing. The messages are checked by hand rather than with
 * zod because the bridge must stay dependency-free and fast to start.
 *
 * The HMAC is passed in (node:crypto in the core and the bridge): common/ imports no Node module.
 *
 * A hello with `"purpose":"control"` opens a control connection instead of an MCP session: after the
 * same handshake, one JSON request per line (`{"id":1,"method":"open"}`), used by `countersign open`.
 * The bridge never sends it, so nothing Claude sends through a bridge reaches a control request.
 */
export const HANDSHAKE_VERSION = 1;
/** Longest handshake line either side accepts. */
export const MAX_HANDSHAKE_LINE = 1024;
/** How long either side waits for the other's next handshake line. */
export const HANDSHAKE_TIMEOUT_MS = 5000;
/** The largest MCP message relayed over the socket or the bridge's stdio; longer lines are dropped with an error. */
export const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

/** HMAC-SHA256 of `data` under the hex-encoded `keyHex`, as lowercase hex. */
export type Hmac = (keyHex: string, data: string) => string;

export interface ClientHello {
  t: 'countersign/hello';
  v: number;
  nonce: string;
  purpose?: 'control';
}
export interface ServerChallenge {
  t: 'countersign/challenge';
  v: number;
  nonce: string;
  proof: string;
}
export interface ClientProof {
  t: 'countersign/proof';
  proof: string;
}
export interface ServerWelcome {
  t: 'countersign/welcome';
  v: number;
}
export interface ServerRefusal {
  t: 'countersign/refused';
  code: string;
  message: string;
}

const HEX_256 = /^[0-9a-f]{64}$/;

function isNonce(value: unknown): value is string {
  return typeof value === 'string' && HEX_256.test(value);
}

export function serverProof(hmac: Hmac, secretHex: string, clientNonce: string, serverNonce: string): string {
  return hmac(secretHex, `countersign/${HANDSHAKE_VERSION}|server|${clientNonce}|${serverNonce}`);
}

export function clientProof(hmac: Hmac, secretHex: string, clientNonce: string, serverNonce: string): string {
  return hmac(secretHex, `countersign/${HANDSHAKE_VERSION}|client|${clientNonce}|${serverNonce}`);
}

/** Compares two strings in time that depends only on their lengths. */
export function constantTimeEqual(a: string, b: string): boolean {
  let diff = a.length ^ b.length;
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) diff |= (a.charCodeAt(i) || 0) ^ (b.charCodeAt(i) || 0);
  return diff === 0;
}

function parseObject(line: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(line);
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

export function parseHello(line: string): ClientHello | undefined {
  const o = parseObject(line);
  if (!o || o.t !== 'countersign/hello' || o.v !== HANDSHAKE_VERSION || !isNonce(o.nonce)) return undefined;
  if (o.purpose !== undefined && o.purpose !== 'control') return undefined;
  return { t: o.t, v: o.v, nonce: o.nonce, ...(o.purpose === 'control' ? { purpose: o.purpose } : {}) };
}

export function parseChallenge(line: string): ServerChallenge | ServerRefusal | undefined {
  const o = parseObject(line);
  if (!o) return undefined;
  const refusal = asRefusal(o);
  if (refusal) return refusal;
  if (o.t !== 'countersign/challenge' || o.v !== HANDSHAKE_VERSION || !isNonce(o.nonce) || !isNonce(o.proof)) return undefined;
  return { t: o.t, v: o.v, nonce: o.nonce, proof: o.proof };
}

export function parseProof(line: string): ClientProof | undefined {
  const o = parseObject(line);
  if (!o || o.t !== 'countersign/proof' || !isNonce(o.proof)) return undefined;
  return { t: o.t, proof: o.proof };
}

export function parseWelcome(line: string): ServerWelcome | ServerRefusal | undefined {
  const o = parseObject(line);
  if (!o) return undefined;
  const refusal = asRefusal(o);
  if (refusal) return refusal;
  if (o.t !== 'countersign/welcome' || o.v !== HANDSHAKE_VERSION) return undefined;
  return { t: o.t, v: o.v };
}

function asRefusal(o: Record<string, unknown>): ServerRefusal | undefined {
  if (o.t !== 'countersign/refused') return undefined;
  return {
    t: 'countersign/refused',
    code: typeof o.code === 'string' ? o.code.slice(0, 64) : 'HANDSHAKE_FAILED',
    message: typeof o.message === 'string' ? o.message.slice(0, 300) : 'The handshake was refused.',
  };
}

export function encodeLine(message: unknown): string {
  return JSON.stringify(message) + '\n';
}

/**
 * Splits a byte stream into newline-terminated lines without ever holding more than `maxLineBytes` of
 * one line: a longer line is dropped as it arrives and reported once through `onOversize`.
 */
export class LineSplitter {
  readonly #maxLineBytes: number;
  readonly #onLine: ((line: string) => void) | undefined;
  readonly #onBytes: ((line: Uint8Array) => void) | undefined;
  readonly #onOversize: (bytes: number) => void;
  readonly #decoder = new TextDecoder();
  #chunks: Uint8Array[] = [];
  #pending = 0;
  #discarding = false;
  #discarded = 0;
  #paused = false;
  #rest: Uint8Array[] = [];
  /** The chunk being pushed and where its unread part starts, while a callback runs. */
  #current: Uint8Array | undefined;
  #currentAt = 0;

  /**
   * `onLine` gets each line decoded, without its line ending; `onLineBytes` (for a relay that passes
   * lines on unchanged) gets its bytes with the ending, undecoded and, when the line arrived in one
   * chunk, uncopied.
   */
  constructor(
    options: { maxLineBytes: number; onOversize?: (bytes: number) => void } & (
      | { onLine: (line: string) => void; onLineBytes?: undefined }
      | { onLineBytes: (line: Uint8Array) => void; onLine?: undefined }
    ),
  ) {
    this.#maxLineBytes = options.maxLineBytes;
    this.#onLine = options.onLine;
    this.#onBytes = options.onLineBytes;
    this.#onOversize = options.onOversize ?? (() => {});
  }

  /** Stops emitting lines; bytes that arrive afterwards are kept for `takeRest()`. */
  pause(): void {
    this.#paused = true;
  }

  /**
   * Everything received and not yet emitted, for the next reader of the same stream. Called from a
   * line's callback, it includes the rest of the chunk that line came in (a peer may send its next
   * lines in the same write as the last handshake line), and no further line of it is emitted.
   */
  takeRest(): Uint8Array[] {
    const rest = [...this.#chunks, ...this.#rest];
    if (this.#current && this.#currentAt < this.#current.length) rest.push(this.#current.subarray(this.#currentAt));
    this.#current = undefined;
    this.#chunks = [];
    this.#rest = [];
    this.#pending = 0;
    return rest;
  }

  push(chunk: Uint8Array): void {
    this.#current = chunk;
    try {
      this.#push(chunk);
    } finally {
      this.#current = undefined;
    }
  }

  #push(chunk: Uint8Array): void {
    let start = 0;
    while (start < chunk.length) {
      if (this.#paused) {
        this.#rest.push(chunk.subarray(start));
        return;
      }
      const nl = chunk.indexOf(10, start);
      if (this.#onBytes && nl !== -1 && this.#pending === 0 && !this.#discarding && nl - start <= this.#maxLineBytes) {
        // The whole line is in this chunk: passed on as a view of it.
        const from = start;
        start = nl + 1;
        if (nl > from && !(nl === from + 1 && chunk[from] === 13)) {
          this.#currentAt = start;
          this.#onBytes(chunk.subarray(from, start));
          if (this.#current !== chunk) return;
        }
        continue;
      }
      const end = nl === -1 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (this.#discarding) {
        this.#discarded += piece.length;
      } else if (this.#pending + piece.length > this.#maxLineBytes) {
        this.#discarding = true;
        this.#discarded = this.#pending + piece.length;
        this.#chunks = [];
        this.#pending = 0;
      } else if (piece.length > 0) {
        this.#chunks.push(piece);
        this.#pending += piece.length;
      }
      if (nl === -1) return;
      start = nl + 1;
      this.#currentAt = start;
      if (this.#discarding) {
        this.#discarding = false;
        this.#onOversize(this.#discarded);
        this.#discarded = 0;
        continue;
      }
      if (this.#onBytes) {
        const bytes = this.#join(1);
        bytes[bytes.length - 1] = 10;
        if (bytes.length > 1 && !(bytes.length === 2 && bytes[0] === 13)) this.#onBytes(bytes);
        if (this.#current !== chunk) return;
        continue;
      }
      const line = this.#decode();
      if (line.trim() !== '') this.#onLine!(line);
      if (this.#current !== chunk) return;
    }
  }

  /** The line's chunks as one array, with `extra` bytes free at its end. */
  #join(extra: number): Uint8Array {
    const chunks = this.#chunks;
    this.#chunks = [];
    this.#pending = 0;
    if (chunks.length === 1 && extra === 0) return chunks[0]!;
    const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0) + extra);
    let at = 0;
    for (const c of chunks) {
      bytes.set(c, at);
      at += c.length;
    }
    return bytes;
  }

  #decode(): string {
    const text = this.#decoder.decode(this.#join(0));
    return text.endsWith('\r') ? text.slice(0, -1) : text;
  }
}
