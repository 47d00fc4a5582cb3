/**
 * Electron test double. The Electron binary cannot be downloaded on the build machines, so the shell's
 * wiring is tested against this stand-in for the `electron` module: it records what the shell asks of
 * Electron (windows and their webPreferences, session handlers, IPC handlers, dialogs) and gives the
 * utility process a real MessageChannel. It is a double, not Electron: what it proves is the shell's
 * wiring and settings, not Electron's behaviour (the Playwright `_electron` spec covers that where a
 * binary exists).
 */
import { EventEmitter } from 'node:events';
import { MessageChannel, type MessagePort } from 'node:worker_threads';

export interface Recorded {
  windows: { options: Record<string, unknown>; loaded: string[]; focused: number }[];
  ipcHandlers: Map<string, (event: unknown, ...args: unknown[]) => unknown>;
  permissionHandler?: (wc: unknown, permission: string, cb: (granted: boolean) => void) => void;
  permissionCheck?: () => boolean;
  beforeRequest?: (details: { url: string }, cb: (r: { cancel: boolean }) => void) => void;
  headersReceived?: (details: { responseHeaders: Record<string, string[]> }, cb: (r: { responseHeaders: Record<string, string[]> }) => void) => void;
  schemes: unknown[];
  forks: { modulePath: string; args: string[]; options?: { execArgv?: string[] }; corePort?: MessagePort }[];
  messageBoxes: unknown[][];
  /** The button each showMessageBox answers, in order; 0 (the first button) once they run out. */
  messageBoxAnswers: number[];
  /** Arguments of each showSaveDialog call; the answer is `saveDialogAnswer` (cancelled by default). */
  saveDialogs: unknown[][];
  saveDialogAnswer: { canceled: boolean; filePath?: string };
}

export function createElectronDouble() {
  const recorded: Recorded = { windows: [], ipcHandlers: new Map(), schemes: [], forks: [], messageBoxes: [], messageBoxAnswers: [], saveDialogs: [], saveDialogAnswer: { canceled: true } };
  const app = Object.assign(new EventEmitter(), {
    isPackaged: false,
    requestSingleInstanceLock: () => true,
    whenReady: () => Promise.resolve(),
    getPath: () => '/tmp/countersign-electron-double',
    getLoginItemSettings: () => ({ openAtLogin: false }),
    setLoginItemSettings: () => undefined,
    quit: () => undefined,
    exit: () => undefined,
  });
  class BrowserWindow extends EventEmitter {
    webContents = Object.assign(new EventEmitter(), { send: () => undefined, setWindowOpenHandler: () => undefined });
    readonly record: Recorded['windows'][number];
    constructor(options: Record<string, unknown>) {
      super();
      this.record = { options, loaded: [], focused: 0 };
      recorded.windows.push(this.record);
    }
    loadURL(url: string) {
      this.record.loaded.push(url);
      return Promise.resolve();
    }
    show() {}
    focus() {
      this.record.focused += 1;
    }
    hide() {}
    restore() {}
    isMinimized() {
      return false;
    }
  }
  const session = {
    defaultSession: {
      setPermissionRequestHandler: (h: Recorded['permissionHandler']) => (recorded.permissionHandler = h),
      setPermissionCheckHandler: (h: Recorded['permissionCheck']) => (recorded.permissionCheck = h),
      setDevicePermissionHandler: () => undefined,
      webRequest: {
        onBeforeRequest: (h: Recorded['beforeRequest']) => (recorded.beforeRequest = h),
        onHeadersReceived: (h: Recorded['headersReceived']) => (recorded.headersReceived = h),
      },
    },
  };
  const utilityProcess = {
    fork(modulePath: string, args: string[], options?: { execArgv?: string[] }) {
      const child = Object.assign(new EventEmitter(), {
        postMessage: (_message: unknown, ports: MessagePort[]) => {
          entry.corePort = ports[0];
        },
        kill: () => child.emit('exit', 0),
      });
      const entry: Recorded['forks'][number] = { modulePath, args, ...(options ? { options } : {}) };
      recorded.forks.push(entry);
      return child;
    },
  };
  class MessageChannelMain {
    port1: unknown;
    port2: unknown;
    constructor() {
      const { port1, port2 } = new MessageChannel();
      // Electron's MessagePortMain delivers `{data}` events; Node's port delivers the data itself.
      const asMain = (port: MessagePort) => {
        const listeners = new Map<unknown, (d: unknown) => void>();
        return {
          postMessage: (m: unknown) => port.postMessage(m),
          start: () => undefined,
          on: (_n: string, l: (e: { data: unknown }) => void) => {
            const w = (data: unknown) => l({ data });
            listeners.set(l, w);
            port.on('message', w);
          },
          off: (_n: string, l: unknown) => {
            const w = listeners.get(l);
            if (w) port.off('message', w);
          },
          raw: port,
        };
      };
      this.port1 = asMain(port1);
      this.port2 = port2;
    }
  }
  const electron = {
    app,
    BrowserWindow,
    session,
    utilityProcess,
    MessageChannelMain,
    ipcMain: { handle: (channel: string, h: Recorded['ipcHandlers'] extends Map<string, infer H> ? H : never) => recorded.ipcHandlers.set(channel, h) },
    protocol: { registerSchemesAsPrivileged: (s: unknown[]) => recorded.schemes.push(...s), handle: () => undefined },
    net: { fetch: () => Promise.resolve(new Response('')) },
    dialog: {
      showMessageBox: (...args: unknown[]) => (recorded.messageBoxes.push(args), Promise.resolve({ response: recorded.messageBoxAnswers.shift() ?? 0, checkboxChecked: false })),
      showSaveDialog: (...args: unknown[]) => (recorded.saveDialogs.push(args), Promise.resolve(recorded.saveDialogAnswer)),
      showErrorBox: () => undefined,
    },
    shell: { openExternal: () => Promise.resolve() },
    systemPreferences: { canPromptTouchID: () => false, promptTouchID: () => Promise.resolve() },
    Menu: { buildFromTemplate: (t: unknown) => t },
    Tray: class {
      setToolTip() {}
      setContextMenu() {}
    },
    nativeImage: { createEmpty: () => ({}) },
  };
  return { electron, recorded };
}
