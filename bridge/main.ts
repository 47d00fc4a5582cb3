/**
 * Entry point of the bridge (bundled to dist/bridge.mjs): resolves the socket from the same paths the
 * core uses and relays stdio to it. See relay.ts.
 */
import './node-check.ts';
import { resolveNodeHostPaths } from '../common/node/host-paths.ts';
import { makeLog } from './log.ts';
import { startBridge } from './relay.ts';
import { CORE_V8_FLAGS } from '../common/v8-flags.ts';

// Built-ins through process.getBuiltinModule, not static imports: see relay.ts.
const { join } = process.getBuiltinModule('node:path');

/** COUNTERSIGN_BRIDGE_TIMING=1: milliseconds since the process started, per start-up step, to stderr. */
const mark =
  process.env.COUNTERSIGN_BRIDGE_TIMING === '1'
    ? (step: string): void => void process.stderr.write(`bridge timing ${performance.now().toFixed(1)} ms ${step}\n`)
    : undefined;
mark?.('bundle loaded');
const { paths, problem } = resolveNodeHostPaths({ env: process.env });
mark?.('paths resolved');
const log = makeLog(paths.logDir);
// Windows only: without the SID or the pipe's random part the core refuses to listen, so the bridge
// finds no core and gives the client the "not running" answer; the reason is logged here.
if (problem) log(`the pipe name is incomplete: the bridge ${problem}`);

startBridge({
  socketPath: paths.socketPath,
  secretPath: paths.secretPath,
  appCommand: appCommand(),
  waitMs: positiveInt(process.env.COUNTERSIGN_APP_WAIT_MS) ?? 10_000,
  stdin: process.stdin,
  stdout: process.stdout,
  log,
  mark,
  // V8's optimising compiler (TurboFan) is left for the core: after a few hundred calls it compiled the
  // relay's per-message functions for ~4 MB more peak RSS and no call faster than its mid tier gives
  // (docs/benchmarks.md, "Where the bridge's memory goes"). Set once started, so loading node:v8 is not on the way
  // to the first answer; V8 takes the flag at its next tier-up decision.
  afterFirstAnswer: () => process.getBuiltinModule('node:v8').setFlagsFromString('--no-opt'),
  onExit: (code) => {
    process.stdout.write('', () => process.exit(code));
  },
});

/**
 * COUNTERSIGN_APP_CMD (a JSON array of strings; `[]`: never start the app), else `countersign serve`
 * next to the bridge.
 */
function appCommand(): string[] | undefined {
  const raw = process.env.COUNTERSIGN_APP_CMD;
  if (raw !== undefined && raw !== '') {
    try {
      const value: unknown = JSON.parse(raw);
      if (Array.isArray(value) && value.length === 0) return undefined;
      if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value as string[];
    } catch {
      // fall through to the warning
    }
    log('COUNTERSIGN_APP_CMD is not a JSON array of strings; the app will not be started');
    return undefined;
  }
  return [process.execPath, ...CORE_V8_FLAGS, join(import.meta.dirname, '..', 'bin', 'countersign.mjs'), 'serve'];
}

function positiveInt(value: string | undefined): number | undefined {
  const n = value === undefined ? NaN : Number(value);
  return Number.isInteger(n) && n >= 0 ? n : undefined;
}
