/**
 * The core's half of the desktop channel (the shell's half is main/electron/core-host.ts). Over one
 * port it serves the UI's desktop channels and `core.drain` to the shell, and asks the shell for what
 * only the shell can do, each direction through common/contract.ts's tables.
 */
import { CHANNELS, CORE_CHANNELS, EVENT_NAMES, SHELL_CHANNELS, channelsFor, type Channel, type ContractHandlers } from '../../common/contract.ts';
import { channelClient, serveChannel, type Served } from '../../common/channel.ts';
import { PortRpc, type PortLike } from '../../common/port-rpc.ts';
import type { Core, CoreOptions } from './app.ts';

export type ShellCapabilities = Required<Pick<CoreOptions, 'prompter' | 'openExternal' | 'present' | 'openUi' | 'chooseExportFile' | 'confirmSettings'>>;

export interface ShellLink {
  /** What the core is given to reach the person through the shell. */
  readonly capabilities: ShellCapabilities;
  /** Serves the started core to the shell: its desktop channels, `core.drain`, and its events. */
  serve(core: Pick<Core, 'handlers' | 'events' | 'stop'>): void;
}

export function linkShell(port: PortLike): ShellLink {
  // Filled by `serve` once the core exists; until then the shell's calls answer "unknown channel".
  const handlers: Record<string, Served> = {};
  const rpc = new PortRpc(port, handlers);
  const shell = channelClient(SHELL_CHANNELS, rpc);
  return {
    capabilities: {
      prompter: { prompt: (view, signal) => shell.call('approval.prompt', view, signal) },
      openExternal: async (url) => void (await shell.call('shell.openExternal', { url })),
      present: () => void shell.call('shell.present', {}).catch(() => undefined),
      openUi: async () => {
        await shell.call('shell.present', {});
        return {};
      },
      chooseExportFile: async (suggested) => (await shell.call('shell.chooseExportFile', suggested)).path,
      confirmSettings: async (view) => (await shell.call('shell.confirmSettings', view)) === 'apply',
    },
    serve(core) {
      const desktop = Object.fromEntries(channelsFor('electron').map((c) => [c, core.handlers[c]])) as Pick<ContractHandlers, Channel>;
      Object.assign(
        handlers,
        serveChannel(CHANNELS, desktop),
        serveChannel(CORE_CHANNELS, {
          'core.drain': async () => {
            await core.stop();
            return { ok: true as const };
          },
        }),
      );
      for (const event of EVENT_NAMES) core.events(event, (payload) => rpc.emit(event, payload));
    },
  };
}
