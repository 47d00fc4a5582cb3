/**
 * The renderer's transport when the headless app serves it (main/headless/web-server.ts). The launch
 * URL's fragment carries a one-time token; it is removed from the address bar at once and exchanged
 * for a bearer that lives only in this closure (not in storage, not in a cookie). Calls are POSTs with
 * the bearer in a header; events arrive on a WebSocket whose first message is the bearer.
 */
import { AppError, fromWire } from '../../../common/errors.ts';
import {
  CHANNELS,
  EVENTS,
  isEventName,
  type Channel,
  type EventName,
  type EventOf,
  type RequestOf,
  type ResponseOf,
  type Transport,
} from '../../../common/contract.ts';

export type ConnectionState = 'connecting' | 'live' | 'offline' | 'ended';

/** What the UI can ask of a host beyond the contract's channels. */
export interface RendererTransport extends Transport {
  /** Downloads an export streamed by the host; null when the host cannot stream one (use `audit.export`). */
  exportFile?(request: RequestOf<'audit.export'>): Promise<{ filename: string; blob: Blob } | null>;
  /** The desktop app: the shell asks where in a native save dialog and the core writes the file. */
  saveExport?(request: RequestOf<'audit.saveExport'>): Promise<ResponseOf<'audit.saveExport'>>;
}

export interface WebTransport extends RendererTransport {
  onConnection(listener: (state: ConnectionState) => void): () => void;
  close(): void;
}

/** Takes the one-time token out of the fragment and out of the address bar (and so out of history). */
export function takeLaunchToken(): string | null {
  const params = new URLSearchParams(window.location.hash.slice(1));
  const token = params.get('token');
  if (window.location.hash) history.replaceState(null, '', window.location.pathname + window.location.search);
  return token;
}

async function readError(res: Response): Promise<AppError> {
  try {
    return fromWire(await res.json());
  } catch {
    return new AppError('INTERNAL', `The app answered ${res.status}.`);
  }
}

export async function connectWebTransport(token: string | null): Promise<WebTransport> {
  if (!token) throw new AppError('WEB_UNAUTHORIZED', 'Open the link `countersign serve` printed to use this page.');
  const res = await fetch('/api/session', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token }),
    credentials: 'omit',
  });
  if (!res.ok) throw await readError(res);
  const { bearer } = (await res.json()) as { bearer: string };

  const listeners = new Map<EventName, Set<(payload: unknown) => void>>();
  const connectionListeners = new Set<(state: ConnectionState) => void>();
  let state: ConnectionState = 'connecting';
  let socket: WebSocket | null = null;
  let closed = false;
  let retry = 0;
  let retryTimer: ReturnType<typeof setTimeout> | undefined;

  const setState = (next: ConnectionState): void => {
    state = next;
    for (const l of connectionListeners) l(next);
  };

  const open = (): void => {
    const ws = new WebSocket(`ws://${window.location.host}/api/events`);
    socket = ws;
    ws.onopen = () => ws.send(JSON.stringify({ bearer }));
    ws.onmessage = (message) => {
      let msg: { event?: unknown; payload?: unknown };
      try {
        msg = JSON.parse(String(message.data)) as typeof msg;
      } catch {
        return;
      }
      if (msg.event === 'ready') {
        retry = 0;
        setState('live');
        return;
      }
      if (!isEventName(msg.event)) return;
      const parsed = EVENTS[msg.event].safeParse(msg.payload);
      if (!parsed.success) return;
      for (const l of listeners.get(msg.event) ?? []) l(parsed.data);
    };
    ws.onclose = (e) => {
      socket = null;
      if (closed) return;
      if (e.code === 4401) return setState('ended');
      setState('offline');
      retryTimer = setTimeout(open, Math.min(10_000, 250 * 2 ** retry++));
    };
  };
  open();

  return {
    async call<C extends Channel>(channel: C, request: RequestOf<C>): Promise<ResponseOf<C>> {
      let response: Response;
      try {
        response = await fetch(`/api/call/${channel}`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${bearer}` },
          body: JSON.stringify(request),
          credentials: 'omit',
        });
      } catch (err) {
        throw new AppError('APP_NOT_RUNNING', 'The app is not answering. Is `countersign serve` still running?', { cause: err });
      }
      if (!response.ok) {
        const error = await readError(response);
        if (error.code === 'WEB_UNAUTHORIZED') setState('ended');
        throw error;
      }
      const parsed = CHANNELS[channel].response.safeParse(await response.json());
      if (!parsed.success) throw new AppError('INTERNAL', `The app's answer to ${channel} did not match the contract.`);
      return parsed.data as ResponseOf<C>;
    },
    on<E extends EventName>(event: E, listener: (payload: EventOf<E>) => void): () => void {
      let set = listeners.get(event);
      if (!set) listeners.set(event, (set = new Set()));
      const l = listener as (payload: unknown) => void;
      set.add(l);
      return () => set.delete(l);
    },
    async exportFile(request) {
      const response = await fetch('/api/export', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${bearer}` },
        body: JSON.stringify(request),
        credentials: 'omit',
      });
      if (response.status === 404) return null;
      if (!response.ok) throw await readError(response);
      const disposition = response.headers.get('Content-Disposition') ?? '';
      const filename = /filename="([A-Za-z0-9._-]+)"/.exec(disposition)?.[1] ?? 'countersign-audit';
      return { filename, blob: await response.blob() };
    },
    onConnection(listener) {
      connectionListeners.add(listener);
      listener(state);
      return () => connectionListeners.delete(listener);
    },
    close() {
      closed = true;
      clearTimeout(retryTimer);
      socket?.close();
    },
  };
}
