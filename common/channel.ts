/**
 * Serving and calling a table of channels (common/contract.ts). Every host answers through
 * `serveChannel`: the Electron IPC (UI → shell → core), the core's utility process (shell → core), the
 * shell for the core's requests (core → shell) and the headless web host. So no handler sees a request
 * its schema did not admit, and nothing leaves that its response schema does not name.
 */
import type { z } from 'zod';
import { AppError } from './errors.ts';

export interface ChannelSpec {
  request: z.ZodType;
  response: z.ZodType;
}
export type ChannelTable = Record<string, ChannelSpec>;

/** One channel's implementation: the parsed request in, the response's input shape out. */
export type ChannelHandler<T extends ChannelTable, C extends keyof T> = (
  request: z.output<T[C]['request']>,
  signal: AbortSignal,
) => Promise<z.input<T[C]['response']>>;

/** A served channel: takes the raw request as it arrived, answers the parsed response. */
export type Served = (raw: unknown, signal?: AbortSignal) => Promise<unknown>;

/**
 * Wraps each handler so its request is parsed with the channel's request schema (INPUT_INVALID
 * naming where it failed, before the handler runs) and its answer with the response schema (unnamed
 * fields stripped). Handler errors pass through unchanged so their `AppError` code survives.
 */
export function serveChannel<T extends ChannelTable, N extends keyof T & string>(
  table: T,
  handlers: { [C in N]: ChannelHandler<T, C> },
): Record<N, Served> {
  const served = {} as Record<N, Served>;
  for (const name of Object.keys(handlers) as N[]) {
    const spec = table[name];
    if (!spec) throw new AppError('INTERNAL', `No channel ${name} in this table.`);
    const handler = handlers[name];
    served[name] = async (raw, signal = new AbortController().signal) => {
      const request = spec.request.safeParse(raw ?? {});
      if (!request.success) {
        const where = request.error.issues[0]?.path.join('.') || 'request';
        throw new AppError('INPUT_INVALID', `The request to ${name} is not valid (${where}).`);
      }
      return spec.response.parse(await handler(request.data as z.output<T[N]['request']>, signal));
    };
  }
  return served;
}

/** Anything that carries a request to the other side (PortRpc, the preload). */
export interface Caller {
  call(method: string, params: unknown, signal?: AbortSignal): Promise<unknown>;
}

/** The calling side of a table: typed requests, and answers parsed with the response schema on arrival. */
export interface ChannelClient<T extends ChannelTable> {
  call<C extends keyof T & string>(name: C, request: z.input<T[C]['request']>, signal?: AbortSignal): Promise<z.output<T[C]['response']>>;
}

export function channelClient<T extends ChannelTable>(table: T, caller: Caller): ChannelClient<T> {
  return {
    async call(name, request, signal) {
      return table[name]!.response.parse(await caller.call(name, request, signal)) as z.output<(typeof table)[typeof name]['response']>;
    },
  };
}
