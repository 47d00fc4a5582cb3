/**
 * The core as the desktop app runs it, over the port the shell handed it (./utility-entry.ts, in the
 * utility process). With a configuration it starts the core; with none it serves the same setup
 * screen `countersign serve` does (./setup/until-configured.ts), and starts the core on what the screen
 * saved, so the window the shell opens shows the setup screen instead of an error. A configuration file
 * that is there but broken still refuses to start, with its reason.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import type { PortLike } from '../../common/port-rpc.ts';
import { AppError } from '../../common/errors.ts';
import type { CountersignPaths } from '../../common/paths.ts';
import { startCore, type Core } from './app.ts';
import { loadConfiguration, type LoadedConfig } from './config/config.ts';
import type { Log } from './mcp/socket-server.ts';
import type { SecretStore } from './ports.ts';
import type { SecretStoreStatus } from './secrets/open-secret-store.ts';
import { untilConfigured } from './setup/until-configured.ts';
import { linkShell } from './shell-link.ts';

export interface DesktopCoreOptions {
  /** Where `config.json` is (`--data-dir`, the shell's userData folder). */
  dataDir: string;
  paths: CountersignPaths;
  secrets: SecretStore;
  /** What `openSecretStore` said about `secrets`: the status's `keychain`. */
  keychain?: SecretStoreStatus;
  version: string;
  log: Log;
  platform?: NodeJS.Platform;
  env?: Readonly<Record<string, string | undefined>>;
}

export async function startDesktopCore(port: PortLike, o: DesktopCoreOptions): Promise<{ core(): Core | undefined; stop(): Promise<void> }> {
  const platform = o.platform ?? process.platform;
  const env = o.env ?? process.env;
  const file = path.join(o.dataDir, 'config.json');
  const loaded = await loadConfiguration(file, { platform, env }).catch((error: unknown) => {
    if (AppError.is(error, 'CONFIG_MISSING') || !existsSync(file)) return undefined;
    throw error;
  });
  const shell = linkShell(port);
  const launch = ({ config, managed }: LoadedConfig) =>
    startCore({ config, ...(managed ? { managed } : {}), configFile: file, host: 'electron', version: o.version, secrets: o.secrets, ...(o.keychain ? { keychain: o.keychain } : {}), ...shell.capabilities, paths: o.paths, log: o.log });
  if (loaded) {
    const core = await launch(loaded);
    shell.serve(core);
    return { core: () => core, stop: () => core.stop() };
  }
  o.log.warn(`Countersign is not configured yet: the window opens on the setup screen, which writes ${file}.`);
  const host = untilConfigured({ file, host: 'electron', version: o.version, platform, env, launch, log: (l) => o.log.info(l) });
  shell.serve({ handlers: host.handlers, events: host.events, stop: host.stop });
  return { core: host.core, stop: host.stop };
}
