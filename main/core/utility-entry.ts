/**
 * The core's entry in the desktop app: Electron starts it as a utility process and hands it a
 * MessagePort (main/electron/core-host.ts), over which ./shell-link.ts serves the core to the shell and
 * asks the shell for what only it can do: a native approval dialog, the system browser. Plain Node, no
 * electron import: `process.parentPort` is the utility process's own channel.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { fromEventPort, type EventPort, type PortLike } from '../../common/port-rpc.ts';
import { startDesktopCore } from './desktop-core.ts';
import { hostPaths } from './mcp/host-paths.ts';
import { openSecretStore } from './secrets/open-secret-store.ts';

interface ParentPortMessage {
  data: unknown;
  ports: Array<EventPort & { start(): void }>;
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
  void run(fromEventPort(port)).catch((error: unknown) => {
    log.error(`the core could not start: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  });
});

async function run(port: PortLike): Promise<void> {
  const paths = hostPaths();
  const { store: secrets, status: keychain } = await openSecretStore({ log: (l) => log.info(l) });
  await startDesktopCore(port, {
    dataDir: typeof values['data-dir'] === 'string' ? values['data-dir'] : paths.dataDir,
    paths,
    secrets,
    keychain,
    version: (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version,
    log,
  });
}
