/**
 * The desktop shell: windows, native dialogs, tray, lifecycle. It starts the core as an Electron
 * utility process and holds no token or credential itself (docs/architecture.md, "Processes and what each may hold").
 * Bundled to dist/electron/main.cjs by scripts/build-electron.mjs.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  app,
  BrowserWindow,
  dialog,
  ipcMain,
  Menu,
  MessageChannelMain,
  nativeImage,
  net,
  protocol,
  session,
  shell,
  systemPreferences,
  Tray,
  utilityProcess,
} from 'electron';
import type { Status } from '../../common/contract.ts';
import { APP_SCHEME_PRIVILEGES, registerAppProtocol } from './app-protocol.ts';
import { startCoreProcess, type CoreHost } from './core-host.ts';
import { APP_URL, hardenContents, hardenSession, webPreferences } from './hardening.ts';
import { EVENT_CHANNEL, registerIpcHandlers } from './ipc.ts';
import { chooseExportFile } from './save-dialog.ts';
import { confirmSettings } from './settings-dialog.ts';
import { promptNatively } from './native-prompter.ts';
import { trayMenu, trayTooltip } from './tray.ts';

// The bundle is CommonJS (Electron's main); the sources also load as ESM under tests.
const here = typeof __dirname === 'string' ? __dirname : path.dirname(fileURLToPath(import.meta.url));
const rendererRoot = path.resolve(here, '..', 'renderer');
const preload = path.join(here, 'preload.cjs');
const coreEntry = path.resolve(here, '..', 'core', 'core.mjs');

let mainWindow: BrowserWindow | null = null;
let core: CoreHost | null = null;
let tray: Tray | null = null;
let quitting = false;

protocol.registerSchemesAsPrivileged([APP_SCHEME_PRIVILEGES]);

if (!app.requestSingleInstanceLock()) {
  app.quit();
} else {
  app.on('second-instance', () => showWindow());
  app.on('web-contents-created', (_event, contents) => hardenContents(contents));
  app.whenReady().then(start, (error: unknown) => {
    dialog.showErrorBox('Countersign could not start', String(error));
    app.exit(1);
  });
}

function createWindow(): BrowserWindow {
  const win = new BrowserWindow({
    width: 1180,
    height: 780,
    show: false,
    title: 'Countersign',
    webPreferences: webPreferences(preload, !app.isPackaged),
  });
  win.once('ready-to-show', () => win.show());
  win.on('close', (event) => {
    if (!quitting) {
      event.preventDefault();
      win.hide();
    }
  });
  void win.loadURL(APP_URL);
  return win;
}

function showWindow(): void {
  if (!mainWindow) mainWindow = createWindow();
  if (mainWindow.isMinimized()) mainWindow.restore();
  mainWindow.show();
  mainWindow.focus();
}

async function start(): Promise<void> {
  hardenSession(session.defaultSession);
  registerAppProtocol(protocol, net, rendererRoot);
  const demo = process.argv.includes('--demo');
  core = startCoreProcess(
    {
      fork: (modulePath, args, options) => utilityProcess.fork(modulePath, args, options),
      createChannel: () => new MessageChannelMain(),
    },
    coreEntry,
    ['--host=electron', `--data-dir=${app.getPath('userData')}`, ...(demo ? ['--demo'] : [])],
    {
      'approval.prompt': async (view, signal) => {
        showWindow();
        return promptNatively({ dialog, systemPreferences, parent: () => mainWindow, platform: process.platform }, view, signal);
      },
      'shell.chooseExportFile': async (suggested) => {
        showWindow();
        return chooseExportFile({ dialog, parent: () => mainWindow, downloads: app.getPath('downloads') }, suggested);
      },
      'shell.confirmSettings': async (view) => {
        showWindow();
        return confirmSettings({ dialog, parent: () => mainWindow }, view);
      },
      // The core needs the person (a call before sign-in, `countersign open`): the window comes to the front.
      'shell.present': async () => {
        showWindow();
        return {};
      },
      // The channel's schema admits http(s) URLs only.
      'shell.openExternal': async ({ url }) => {
        await shell.openExternal(url);
        return { ok: true as const };
      },
    },
  );
  registerIpcHandlers(ipcMain, core.rpc);
  core.onEvent((name, payload) => {
    mainWindow?.webContents.send(EVENT_CHANNEL, name, payload);
    if (name === 'status.changed') updateTray(payload as Status);
  });
  mainWindow = createWindow();
  tray = new Tray(nativeImage.createEmpty());
  updateTray(null);
  if (app.isPackaged) {
    const { autoUpdater } = await import('electron-updater');
    void autoUpdater.checkForUpdatesAndNotify().catch(() => undefined);
  }
}

function updateTray(status: Status | null): void {
  if (!tray) return;
  tray.setToolTip(trayTooltip(status));
  tray.setContextMenu(
    Menu.buildFromTemplate(
      trayMenu(status, {
        startAtLogin: app.getLoginItemSettings().openAtLogin,
        setStartAtLogin: (on) => {
          app.setLoginItemSettings({ openAtLogin: on });
          updateTray(status);
        },
        open: showWindow,
        signIn: () => void core?.rpc.call('session.signIn', {}).catch(() => undefined),
        signOut: () => void core?.rpc.call('session.signOut', {}).catch(() => undefined),
        quit: () => app.quit(),
      }),
    ),
  );
}

app.on('before-quit', (event) => {
  if (quitting) return;
  quitting = true;
  event.preventDefault();
  void (core?.stop() ?? Promise.resolve()).finally(() => app.exit(0));
});

app.on('window-all-closed', () => {
  // The app lives in the tray; quitting is explicit.
});
