/**
 * `countersign serve`: the core under plain Node with the hardened web UI on 127.0.0.1, for machines
 * without a desktop and for the end-to-end tests. `countersign start`: the desktop app where Electron's
 * binary can be had, otherwise `serve`, saying why.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { AppError } from '../../common/errors.ts';
import { resolvePaths } from '../../common/paths.ts';
import { hostPaths } from '../core/mcp/host-paths.ts';
import { waitForUi } from '../core/approvals/prompter.ts';
import { startCore, type Core } from '../core/app.ts';
import { loadConfiguration, type AppConfig } from '../core/config/config.ts';
import { untilConfigured, type UntilConfigured } from '../core/setup/until-configured.ts';
import type { Log } from '../core/mcp/socket-server.ts';
import { openSecretStore } from '../core/secrets/open-secret-store.ts';
import { CORE_V8_FLAGS } from '../../common/v8-flags.ts';
import { openExternal } from './open-external.ts';
import { startWebServer, type WebServer } from './web-server.ts';
import { EXPORT_MEDIA_TYPES, exportFilename, exportLines } from '../core/audit/export.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));

/** Node options for a process that hosts the core, given on its command line: see common/v8-flags.ts. */
export const CORE_NODE_OPTIONS: readonly string[] = CORE_V8_FLAGS;

export interface Served {
  core: Core;
  web: WebServer;
  url: string;
  stop(): Promise<void>;
}

export function stderrLog(prefix = 'countersign'): Log {
  const line = (level: string, message: string, fields?: Record<string, unknown>) =>
    process.stderr.write(`${new Date().toISOString()} ${prefix} ${level} ${message}${fields ? ' ' + JSON.stringify(fields) : ''}\n`);
  return {
    info: (m, f) => line('info', m, f),
    warn: (m, f) => line('warn', m, f),
    error: (m, f) => line('error', m, f),
  };
}

function version(): string {
  return (JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string }).version;
}

/** How often at most the headless host opens a browser page by itself. */
const SUMMON_EVERY_MS = 15_000;

/** Starts the core and the web UI; used by `serve`, by the lab's demo launcher and by tests. */
export async function serve(options: {
  /** Absent: nothing is configured yet, and the UI opens on the setup screen, which writes `configFile`. */
  config?: AppConfig;
  /** Where the setup screen writes the configuration (needed without `config`), and the settings screen changes it. */
  configFile?: string;
  /** The fields the organisation manages (managed.ts), shown as such in the settings. */
  managed?: { where: string; fields: string[] };
  port?: number;
  log?: Log;
  home?: string;
  /** Opens the web UI (a launch link) in the browser; the OS opener unless a test plays the browser. */
  openUi?: (url: string) => Promise<void>;
  /** Opens the IdP's sign-in page; the OS opener unless a test plays the browser. */
  openExternal?: (url: string) => Promise<void>;
  /** SUMMON_EVERY_MS unless a test needs every summons to count. */
  summonEveryMs?: number;
  vaultHealthEveryMs?: number;
}): Promise<Served> {
  const log = options.log ?? stderrLog();
  const env = options.home ? { ...process.env, COUNTERSIGN_HOME: options.home } : process.env;
  const paths = hostPaths({ env });
  const staticDir = path.join(root, 'dist', 'renderer');
  if (!existsSync(path.join(staticDir, 'index.html'))) {
    throw new AppError('CONFIG_MISSING', 'The web UI is not built yet: run `npm run build` first.');
  }
  const { store: secrets, status: keychain } = await openSecretStore({ log: (line) => log.info(line) });
  const openUi = options.openUi ?? openExternal;
  const openSignIn = options.openExternal ?? openExternal;
  const ref: { web?: WebServer } = {};
  let lastSummon = 0;
  /**
   * The person is needed (a call before sign-in, an approval) and no page shows the UI: open one with
   * a fresh launch link, at most every SUMMON_EVERY_MS, and say so on stderr.
   */
  const summon = (why: 'sign-in' | 'approval'): void => {
    const web = ref.web;
    if (!web || web.liveUis() > 0 || Date.now() - lastSummon < (options.summonEveryMs ?? SUMMON_EVERY_MS)) return;
    lastSummon = Date.now();
    log.warn(
      why === 'approval'
        ? 'A call is waiting for your approval and no Countersign page is open: opening one in your browser (or run `countersign open`).'
        : 'Claude called a tool before you signed in: opening Countersign in your browser to sign in (or run `countersign open`).',
    );
    void openUi(web.issueLaunchUrl()).catch(() => undefined);
  };
  let waiting = new Set<string>();
  let offApprovals = (): void => {};
  const launch = async (config: AppConfig, managed: { where: string; fields: string[] } | undefined): Promise<Core> => {
    const started = await startCore({
      config,
      ...(managed ? { managed } : {}),
      ...(options.configFile ? { configFile: options.configFile } : {}),
      host: 'headless',
      version: version(),
      secrets,
      keychain,
      prompter: waitForUi,
      openExternal: openSignIn,
      paths,
      ...(env.COUNTERSIGN_HOME ? { countersignHome: env.COUNTERSIGN_HOME } : {}),
      log,
      vaultHealthEveryMs: options.vaultHealthEveryMs,
      present: summon,
      openUi: async () => {
        if (!ref.web) throw new AppError('INTERNAL', 'The web UI is not ready yet.');
        return { url: ref.web.issueLaunchUrl() };
      },
    });
    offApprovals = started.events('approvals.changed', ({ pending }) => {
      const now = new Set(pending.map((p) => p.id));
      const fresh = [...now].some((id) => !waiting.has(id));
      waiting = now;
      if (fresh) summon('approval');
    });
    return started;
  };
  let core: Core | undefined = options.config ? await launch(options.config, options.managed) : undefined;
  let host: UntilConfigured | undefined;
  if (!core) {
    const file = options.configFile;
    if (!file) throw new AppError('CONFIG_MISSING', 'Nothing is configured and no configuration file was named for the setup screen.');
    log.warn(`Countersign is not configured yet: the web UI opens on the setup screen, which writes ${file}.`);
    host = untilConfigured({
      file,
      host: 'headless',
      version: version(),
      platform: process.platform,
      env,
      launch: async (loaded) => (core = await launch(loaded.config, loaded.managed)),
      log: (l) => log.info(l),
    });
  }
  // Once the setup screen has saved, every channel and event is the new core's.
  const delegating = host?.handlers ?? core!.handlers;
  let web: WebServer;
  try {
    web = await startWebServer({
      handlers: delegating,
      events: host?.events ?? core!.events,
      staticDir,
      port: options.port,
      log: (l) => log.info(l),
      // Exports stream from one read snapshot instead of travelling as one string.
      exportAudit: ({ format, filter }) => {
        if (!core) throw new AppError('CONFIG_MISSING', 'Countersign is not configured yet: finish the setup screen first.');
        return {
          filename: exportFilename(format),
          mediaType: EXPORT_MEDIA_TYPES[format],
          lines: exportLines(core.audit, format, filter),
        };
      },
    });
  } catch (error) {
    await core?.stop();
    throw error;
  }
  ref.web = web;
  return {
    get core(): Core {
      if (!core) throw new AppError('CONFIG_MISSING', 'Countersign is not configured yet: finish the setup screen first.');
      return core;
    },
    web,
    url: web.url,
    async stop() {
      offApprovals();
      await web.close();
      await core?.stop();
    },
  };
}

function flags(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      config: { type: 'string' },
      port: { type: 'string' },
      'no-open': { type: 'boolean', default: false },
      demo: { type: 'boolean', default: false },
    },
    strict: true,
  }).values;
}

export function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
}

export async function runServe(argv: string[]): Promise<number> {
  const f = flags(argv);
  if (f.demo) {
    process.stderr.write('The local lab is started by `npm run demo` (it is a development tool and not part of the app).\n');
    return 2;
  }
  const paths = resolvePaths({ platform: process.platform, env: process.env, home: homedir() });
  const file = f.config ?? path.join(paths.dataDir, 'config.json');
  // No file of the person's (and no complete managed one): the UI opens on the setup screen. A file
  // that is there but broken still refuses, with its reason.
  const loaded = await loadConfiguration(file, { platform: process.platform, env: process.env }).catch((error: unknown) => {
    if (AppError.is(error, 'CONFIG_MISSING') || !existsSync(file)) return undefined;
    throw error;
  });
  const served = await serve({
    ...(loaded ? { config: loaded.config, ...(loaded.managed ? { managed: loaded.managed } : {}) } : {}),
    configFile: file,
    port: f.port ? Number(f.port) : undefined,
  });
  const stopRequested = untilSignal(); // listening before anything is printed that a script could act on
  process.stdout.write(`Countersign is running headless. Open the app:\n  ${served.url}\n`);
  if (!f['no-open']) void openExternal(served.url).catch(() => undefined);
  await stopRequested;
  await served.stop();
  return 0;
}

/** The Electron binary, when this machine has one (it is downloaded on first launch where there is internet). */
export function electronBinary(): string | null {
  try {
    const require = createRequire(import.meta.url);
    const dir = path.dirname(require.resolve('electron/package.json'));
    const override = process.env.ELECTRON_OVERRIDE_DIST_PATH;
    const candidates = [
      override && path.join(override, process.platform === 'darwin' ? 'Electron.app/Contents/MacOS/Electron' : 'electron'),
      path.join(dir, 'dist', process.platform === 'darwin' ? 'Electron.app/Contents/MacOS/Electron' : process.platform === 'win32' ? 'electron.exe' : 'electron'),
    ].filter((c): c is string => !!c);
    return candidates.find((c) => existsSync(c)) ?? null;
  } catch {
    return null;
  }
}

export async function runStart(argv: string[]): Promise<number> {
  const binary = electronBinary();
  const main = path.join(root, 'dist', 'electron', 'main.cjs');
  if (binary && existsSync(main)) {
    const child = spawn(binary, [main, ...argv], { stdio: 'inherit' });
    return new Promise((resolve) => child.once('exit', (code) => resolve(code ?? 0)));
  }
  process.stderr.write(
    `Electron is not available here (${binary ? 'dist/electron/main.cjs is missing: run npm run build' : "its binary isn't installed: Electron downloads it on first launch, which needs internet"}). ` +
      'Starting the headless app instead: the same core, with the UI in your browser on 127.0.0.1.\n',
  );
  return runServe(argv);
}
