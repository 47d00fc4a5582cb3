import { createContext, useCallback, useContext, useEffect, useRef, useState } from 'react';
import { AppError } from '../../../common/errors.ts';
import type { Channel, EventName, EventOf, RequestOf, ResponseOf } from '../../../common/contract.ts';
import type { RendererTransport } from '../transport/web-transport.ts';

export const TransportContext = createContext<RendererTransport | null>(null);

export function useTransport(): RendererTransport {
  const t = useContext(TransportContext);
  if (!t) throw new Error('No transport');
  return t;
}

/** Subscribes to an app event for the component's lifetime. */
export function useEvent<E extends EventName>(event: E, listener: (payload: EventOf<E>) => void): void {
  const transport = useTransport();
  const ref = useRef(listener);
  ref.current = listener;
  useEffect(() => transport.on(event, (p) => ref.current(p)), [transport, event]);
}

export interface Query<T> {
  data: T | undefined;
  error: AppError | null;
  loading: boolean;
  reload(): void;
}

/** Calls a channel on mount (and on `reload`), keeping the last answer and the last error. */
export function useQuery<C extends Channel>(channel: C, request: RequestOf<C>, refreshOn: EventName[] = []): Query<ResponseOf<C>> {
  const transport = useTransport();
  const [data, setData] = useState<ResponseOf<C>>();
  const [error, setError] = useState<AppError | null>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);
  const key = JSON.stringify(request);
  useEffect(() => {
    let live = true;
    setLoading(true);
    transport.call(channel, JSON.parse(key) as RequestOf<C>).then(
      (value) => {
        if (!live) return;
        setData(value);
        setError(null);
        setLoading(false);
      },
      (err: unknown) => {
        if (!live) return;
        setError(AppError.from(err));
        setLoading(false);
      },
    );
    return () => {
      live = false;
    };
  }, [transport, channel, key, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  const events = refreshOn.join(',');
  useEffect(() => {
    const offs = events ? events.split(',').map((e) => transport.on(e as EventName, reload)) : [];
    return () => offs.forEach((off) => off());
  }, [transport, events, reload]);
  return { data, error, loading, reload };
}

/** Runs an action, exposing whether it is running and its error. */
export function useAction(): { run<T>(fn: () => Promise<T>): Promise<T | undefined>; busy: boolean; error: AppError | null; clear(): void } {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<AppError | null>(null);
  const run = useCallback(async <T,>(fn: () => Promise<T>): Promise<T | undefined> => {
    setBusy(true);
    setError(null);
    try {
      return await fn();
    } catch (err) {
      setError(AppError.from(err));
      return undefined;
    } finally {
      setBusy(false);
    }
  }, []);
  return { run, busy, error, clear: () => setError(null) };
}
