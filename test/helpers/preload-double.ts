/**
 * Electron test double for the preload side (the Electron binary cannot exist here). Stands in for the
 * `electron` module: `vi.mock('electron', () => import('../helpers/preload-double.ts'))`.
 * - `contextBridge.exposeInMainWorld` records what the preload exposes, in `exposedInMainWorld`;
 * - `ipcRenderer.invoke` reaches the handlers registered through `ipcMain.handle` (pass `ipcMain` to
 *   main/electron/ipc.ts), as a call from the app's own top frame;
 * - `ipcRenderer.on` listens on `renderer`, where a test emits what the main process would send.
 */
import { EventEmitter } from 'node:events';

type Handler = (event: unknown, ...args: unknown[]) => unknown;

export const exposedInMainWorld = new Map<string, unknown>();
export const ipcMainHandlers = new Map<string, Handler>();
export const renderer = new EventEmitter();
const appFrame = { url: 'app://countersign/index.html', parent: null };

export const contextBridge = { exposeInMainWorld: (key: string, api: unknown) => void exposedInMainWorld.set(key, api) };

export const ipcRenderer = {
  invoke: async (channel: string, ...args: unknown[]) => {
    const handler = ipcMainHandlers.get(channel);
    if (!handler) throw new Error(`No handler registered for '${channel}'`);
    return handler({ senderFrame: appFrame }, ...args);
  },
  on: (channel: string, listener: (...args: unknown[]) => void) => renderer.on(channel, listener),
  removeListener: (channel: string, listener: (...args: unknown[]) => void) => renderer.removeListener(channel, listener),
};

export const ipcMain = { handle: (channel: string, handler: Handler) => void ipcMainHandlers.set(channel, handler) };
