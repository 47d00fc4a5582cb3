/**
 * The renderer's transport inside Electron: the object main/electron/preload.ts exposes. Rejections
 * arrive as plain `{code, message}` objects (structured clone drops Error subclasses) and become
 * AppErrors here.
 */
import { fromWire } from '../../../common/errors.ts';
import { CHANNELS, PRELOAD_GLOBAL, type Channel, type RequestOf, type ResponseOf } from '../../../common/contract.ts';
import type { RendererTransport } from './web-transport.ts';

interface Exposed {
  call(channel: string, request: unknown): Promise<unknown>;
  on(event: string, listener: (payload: unknown) => void): () => void;
}

export function preloadTransport(): RendererTransport | null {
  const exposed = (window as unknown as Record<string, unknown>)[PRELOAD_GLOBAL] as Partial<Exposed> | undefined;
  if (typeof exposed?.call !== 'function' || typeof exposed.on !== 'function') return null;
  const bridge = exposed as Exposed;
  async function call<C extends Channel>(channel: C, request: RequestOf<C>): Promise<ResponseOf<C>> {
    let value: unknown;
    try {
      value = await bridge.call(channel, request);
    } catch (err) {
      throw fromWire(err);
    }
    return CHANNELS[channel].response.parse(value) as ResponseOf<C>;
  }
  return {
    call,
    on: (event, listener) => bridge.on(event, listener as (payload: unknown) => void),
    saveExport: (request) => call('audit.saveExport', request),
  };
}
