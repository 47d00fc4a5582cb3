/**
 * An MCP transport over one authenticated socket connection: newline-delimited JSON-RPC, the framing of
 * the MCP stdio transport. Written here rather than reusing the SDK's StdioServerTransport because the
 * core must answer hostile input itself: a line over the size limit is dropped as it streams in
 * (the SDK's buffer holds it whole first), an unparsable line gets a JSON-RPC parse error (-32700), a
 * message that is not JSON-RPC gets -32600, and requests before `initialize` are refused.
 */
import type { Socket } from 'node:net';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { JSONRPCMessageSchema, type JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import { LineSplitter, MAX_MESSAGE_BYTES, encodeLine } from '../../../common/handshake.ts';

const PARSE_ERROR = -32700;
const INVALID_REQUEST = -32600;

export class SocketTransport implements Transport {
  onclose?: () => void;
  onerror?: (error: Error) => void;
  onmessage?: (message: JSONRPCMessage) => void;
  sessionId?: string;

  readonly #socket: Socket;
  readonly #splitter: LineSplitter;
  readonly #leftover: Uint8Array[];
  #initialized = false;
  #closed = false;

  constructor(socket: Socket, options: { leftover?: Uint8Array[]; maxMessageBytes?: number; sessionId?: string } = {}) {
    this.#socket = socket;
    this.#leftover = options.leftover ?? [];
    this.sessionId = options.sessionId;
    this.#splitter = new LineSplitter({
      maxLineBytes: options.maxMessageBytes ?? MAX_MESSAGE_BYTES,
      onLine: (line) => this.#onLine(line),
      onOversize: () => this.#reply(null, INVALID_REQUEST, 'The message is larger than Countersign accepts.'),
    });
  }

  async start(): Promise<void> {
    this.#socket.on('data', this.#onData);
    this.#socket.on('close', this.#onClose);
    this.#socket.on('error', () => {});
    for (const chunk of this.#leftover.splice(0)) this.#splitter.push(chunk);
  }

  async send(message: JSONRPCMessage): Promise<void> {
    if (this.#closed || this.#socket.destroyed) return;
    await new Promise<void>((resolve) => {
      const ok = this.#socket.write(encodeLine(message), () => resolve());
      if (!ok) this.#socket.once('drain', () => resolve());
    });
  }

  async close(): Promise<void> {
    if (this.#socket.destroyed) {
      this.#onClose();
      return;
    }
    this.#socket.end();
    this.#socket.destroySoon?.();
    setTimeout(() => this.#socket.destroy(), 1000).unref();
  }

  readonly #onData = (chunk: Buffer): void => {
    this.#splitter.push(chunk);
  };

  readonly #onClose = (): void => {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.off('data', this.#onData);
    this.onclose?.();
  };

  #onLine(line: string): void {
    let value: unknown;
    try {
      value = JSON.parse(line);
    } catch {
      this.#reply(null, PARSE_ERROR, 'The message is not valid JSON.');
      return;
    }
    const parsed = JSONRPCMessageSchema.safeParse(value);
    if (!parsed.success) {
      this.#reply(idOf(value), INVALID_REQUEST, 'The message is not a valid JSON-RPC 2.0 message.');
      return;
    }
    const message = parsed.data;
    if ('method' in message) {
      if (message.method === 'initialize') this.#initialized = true;
      else if (!this.#initialized && 'id' in message && message.method !== 'ping') {
        this.#reply(message.id, INVALID_REQUEST, 'Send initialize before any other request.');
        return;
      }
    }
    this.onmessage?.(message);
  }

  #reply(id: string | number | null, code: number, message: string): void {
    if (this.#closed || this.#socket.destroyed) return;
    this.#socket.write(encodeLine({ jsonrpc: '2.0', id, error: { code, message } }));
  }
}

function idOf(value: unknown): string | number | null {
  if (typeof value !== 'object' || value === null) return null;
  const id = (value as { id?: unknown }).id;
  return typeof id === 'string' || typeof id === 'number' ? id : null;
}
