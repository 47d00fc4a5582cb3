/**
 * The preload: exposes exactly the contract's desktop channels and events to the renderer through
 * `contextBridge`, and nothing else (no ipcRenderer, no Node). No logic beyond refusing names the
 * contract does not list; main/electron/ipc.ts validates every request and answers in an envelope so
 * errors keep their `{code, message}`.
 */
import { contextBridge, ipcRenderer } from 'electron';
import { EVENT_NAMES, PRELOAD_GLOBAL, channelsFor } from '../../common/contract.ts';
import { EVENT_CHANNEL, type IpcEnvelope } from './ipc.ts';

const channels = new Set<string>(channelsFor('electron'));
const events = new Set<string>(EVENT_NAMES);

export const exposed = {
  async call(channel: string, request: unknown): Promise<unknown> {
    if (!channels.has(channel)) throw { code: 'NOT_FOUND', message: `No channel ${String(channel)}.` };
    const envelope = (await ipcRenderer.invoke(channel, request)) as IpcEnvelope;
    if (envelope.ok) return envelope.value;
    throw envelope.error;
  },
  on(event: string, listener: (payload: unknown) => void): () => void {
    if (!events.has(event) || typeof listener !== 'function') return () => {};
    const relay = (_e: unknown, name: unknown, payload: unknown): void => {
      if (name === event) listener(payload);
    };
    ipcRenderer.on(EVENT_CHANNEL, relay);
    return () => {
      ipcRenderer.removeListener(EVENT_CHANNEL, relay);
    };
  },
};

contextBridge.exposeInMainWorld(PRELOAD_GLOBAL, exposed);
