/**
 * Request/response and events over a message port (Electron's MessagePortMain between the shell and the
 * core's utility process; any `postMessage` channel in tests). Requests can be cancelled; errors travel
 * as `{code, message}` only. Hand-written because the known RPC libraries (comlink and kin) proxy
 * arbitrary objects across the boundary, which is the opposite of a closed, validated channel list.
 */
import { AppError, fromWire, type WireError } from './errors.ts';

export interface PortLike {
  postMessage(message: unknown): void;
  onMessage(listener: (message: unknown) => void): () => void;
}

/** A port that delivers `{ data }` events, as Electron's MessagePortMain does on both sides of the core's channel. */
export interface EventPort {
  postMessage(message: unknown): void;
  on(event: 'message', listener: (event: { data: unknown }) => void): unknown;
  off(event: 'message', listener: (event: { data: unknown }) => void): unknown;
}

export function fromEventPort(port: EventPort): PortLike {
  return {
    postMessage: (message) => port.postMessage(message),
    onMessage: (listener) => {
      const l = (event: { data: unknown }) => listener(event.data);
      port.on('message', l);
      return () => void port.off('message', l);
    },
  };
}

type Handler = (params: unknown, signal: AbortSignal) => Promise<unknown>;

type Frame =
  | { t: 'req'; id: number; m: string; p: unknown }
  | { t: 'res'; id: number; v?: unknown; e?: WireError }
  | { t: 'cancel'; id: number }
  | { t: 'evt'; m: string; p: unknown };

function isFrame(value: unknown): value is Frame {
  if (typeof value !== 'object' || value === null) return false;
  const f = value as { t?: unknown; id?: unknown; m?: unknown };
  if (f.t === 'evt') return typeof f.m === 'string';
  if (f.t === 'req') return typeof f.id === 'number' && typeof f.m === 'string';
  return (f.t === 'res' || f.t === 'cancel') && typeof f.id === 'number';
}

export class PortRpc {
  readonly #port: PortLike;
  readonly #handlers: Record<string, Handler>;
  readonly #pending = new Map<number, { resolve(v: unknown): void; reject(e: unknown): void }>();
  readonly #running = new Map<number, AbortController>();
  readonly #eventListeners = new Set<(name: string, payload: unknown) => void>();
  readonly #off: () => void;
  #nextId = 1;

  constructor(port: PortLike, handlers: Record<string, Handler> = {}) {
    this.#port = port;
    this.#handlers = handlers;
    this.#off = port.onMessage((m) => this.#receive(m));
  }

  call(method: string, params: unknown, signal?: AbortSignal): Promise<unknown> {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(new AppError('CANCELLED', 'The request was cancelled.'));
      const onAbort = () => {
        this.#pending.delete(id);
        this.#port.postMessage({ t: 'cancel', id } satisfies Frame);
        reject(new AppError('CANCELLED', 'The request was cancelled.'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(id, {
        resolve: (v) => (signal?.removeEventListener('abort', onAbort), resolve(v)),
        reject: (e) => (signal?.removeEventListener('abort', onAbort), reject(e)),
      });
      this.#port.postMessage({ t: 'req', id, m: method, p: params } satisfies Frame);
    });
  }

  emit(name: string, payload: unknown): void {
    this.#port.postMessage({ t: 'evt', m: name, p: payload } satisfies Frame);
  }

  onEvent(listener: (name: string, payload: unknown) => void): () => void {
    this.#eventListeners.add(listener);
    return () => this.#eventListeners.delete(listener);
  }

  close(): void {
    this.#off();
    for (const c of this.#running.values()) c.abort();
    for (const p of this.#pending.values()) p.reject(new AppError('APP_NOT_RUNNING', 'The other side of the channel closed.'));
    this.#pending.clear();
  }

  #receive(message: unknown): void {
    if (!isFrame(message)) return;
    switch (message.t) {
      case 'evt':
        for (const l of this.#eventListeners) l(message.m, message.p);
        return;
      case 'cancel':
        this.#running.get(message.id)?.abort();
        return;
      case 'res': {
        const p = this.#pending.get(message.id);
        if (!p) return;
        this.#pending.delete(message.id);
        if (message.e) p.reject(fromWire(message.e));
        else p.resolve(message.v);
        return;
      }
      case 'req':
        void this.#serve(message.id, message.m, message.p);
    }
  }

  async #serve(id: number, method: string, params: unknown): Promise<void> {
    const handler = Object.hasOwn(this.#handlers, method) ? this.#handlers[method] : undefined;
    if (!handler) {
      this.#port.postMessage({ t: 'res', id, e: { code: 'INPUT_INVALID', message: `Unknown channel "${method}".` } } satisfies Frame);
      return;
    }
    const controller = new AbortController();
    this.#running.set(id, controller);
    try {
      const v = await handler(params, controller.signal);
      this.#port.postMessage({ t: 'res', id, v } satisfies Frame);
    } catch (error) {
      this.#port.postMessage({ t: 'res', id, e: AppError.from(error).toWire() } satisfies Frame);
    } finally {
      this.#running.delete(id);
    }
  }
}
