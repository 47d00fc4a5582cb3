/**
 * The core's entry in the desktop app: Electron starts it as a utility process and hands it a
 * MessagePort (main/electron/core-host.ts). It serves the contract channels to the shell and asks the
 * shell for what only the shell can do: a native approval dialog, the system browser. Plain Node, no
 * electron import: `process.parentPort` is the utility process's own channel.
 */
import path from 'node:path';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { ApprovalAnswer, ApprovalView } from '../../common/approval-view.ts';
import { CHANNELS, channelsFor, EVENT_NAMES } from '../../common/contract.ts';
import { PortRpc, type PortLike } from '../../common/port-rpc.ts';
import { hostPaths } from './mcp/host-paths.ts';
import { startCore } from './app.ts';
import { loadConfiguration } from './config/config.ts';
import { openSecretStore } from './secrets/open-secret-store.ts';

interface ParentPortMessage {
  data: unknown;
  ports: Array<{ postMessage(m: unknown): void; on(e: 'message', l: (ev: { data: unknown }) => void): void; off(e: 'message', l: (ev: { data: unknown }) => void): void; start(): void }>;
}
interface ParentPort {
  once(event: 'message', listener: (message: ParentPortMessage) => void): void;
}

const parentPort = (process as unknown as { parentPort?: ParentPort }).parentPort;
if (!parentPort) {
  process.stderr.write('This is the Countersign core for the desktop app; run `countersign serve` to run it headless.\n');
  process.exit(2);
}

const { values } = parseArgs({ args: process.argv.slice(2), options: { 'data-dir': { type: 'string' }, host: { type: 'string' }, demo: { type: 'boolean' } }, strict: false });
const log = {
  info: (m: string) => process.stderr.write(`core info ${m}\n`),
  warn: (m: string) => process.stderr.write(`core warn ${m}\n`),
  error: (m: string) => process.stderr.write(`core error ${m}\n`),
};

parentPort.once('message', (message) => {
  const port = message.ports[0];
  if (!port) return;
  port.start();
  const portLike: PortLike = {
    postMessage: (m) => port.postMessage(m),
    onMessage: (listener) => {
      const l = (ev: { data: unknown }) => listener(ev.data);
      port.on('message', l);
      return () => port.off('message', l);
    },
  };
  void run(portLike).catch((error: unknown) => {
    log.error(`the core could not start: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
});

async function run(portLike: PortLike): Promise<void> {
  const paths = hostPaths();
  const { config, managed } = await loadConfiguration(path.join(typeof values['data-dir'] === 'string' ? values['data-dir'] : paths.dataDir, 'config.json'), {
    platform: process.platform,
    env: process.env,
  });
  const { store: secrets } = await openSecretStore({ log: (l) => log.info(l) });
  const handlers: Record<string, (params: unknown, signal: AbortSignal) => Promise<unknown>> = {};
  // The shell half of the channel; filled in below once the core exists.
  const rpc = new PortRpc(portLike, handlers);
  const core = await startCore({
    config,
    ...(managed ? { managed } : {}),
    host: 'electron',
    version: (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version,
    secrets,
    prompter: {
      prompt: async (view: ApprovalView, signal: AbortSignal) => (await rpc.call('approval.prompt', view, signal)) as ApprovalAnswer,
    },
    openExternal: async (url) => void (await rpc.call('shell.openExternal', { url })),
    present: () => void rpc.call('shell.present', {}).catch(() => undefined),
    openUi: async () => {
      await rpc.call('shell.present', {});
      return {};
    },
    chooseExportFile: async (suggested) => ((await rpc.call('shell.chooseExportFile', suggested)) as { path?: string }).path,
    paths,
    log,
  });
  for (const channel of channelsFor('electron')) {
    handlers[channel] = async (params) => {
      const request = CHANNELS[channel].request.parse(params ?? {});
      return (core.handlers[channel] as (r: unknown) => Promise<unknown>)(request);
    };
  }
  handlers['core.drain'] = async () => {
    await core.stop();
    return { ok: true };
  };
  for (const event of EVENT_NAMES) core.events(event, (payload) => rpc.emit(event, payload));
}
