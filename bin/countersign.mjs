#!/usr/bin/env node
// Entry point of the `countersign` command. The sources are TypeScript that Node runs directly
// (type stripping, unflagged since Node 22.18); older 22.x gets the flag. A Node older than the project
// needs (a machine's Node 20 that Claude Desktop or a shell finds first) hands the command to the Node
// `npm install` brought, or says in one sentence what to do: it never reaches a .ts file.
import { spawn, spawnSync } from 'node:child_process';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import { HEADLESS_BUNDLE, bundleIsFresh } from '../scripts/core-bundle.mjs';
import { bundledNode, isOlder, oldNodeSentence } from '../scripts/need-node.mjs';

const cli = fileURLToPath(new URL('../main/headless/cli.ts', import.meta.url));

if (isOlder(process.version)) {
  const node = bundledNode();
  if (!node) {
    process.stderr.write(oldNodeSentence() + '\n');
    process.exit(1);
  }
  // Its own process group on POSIX, so a terminal's Ctrl-C reaches it once, forwarded from here.
  const child = spawn(node, [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], {
    stdio: 'inherit',
    detached: process.platform !== 'win32',
  });
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
  child.on('exit', (code, signal) => process.exit(code ?? 128 + (constants.signals[signal] ?? 0)));
  await new Promise(() => {});
}

// The commands that host the core want V8's options for it (common/v8-flags.ts, CORE_V8_FLAGS; a
// test holds the two lists together). The npm scripts and the bridge give them on the command line; run
// any other way (`npx countersign serve`, a global install), the process replaces itself with one that
// has them, keeping its pid, where Node can (process.execve: POSIX, Node 22.15+). Elsewhere it runs as is.
const CORE_V8_FLAGS = ['--liftoff-only', '--max-semi-space-size=4', '--max-old-space-size=256'];
if (
  (process.argv[2] === 'serve' || process.argv[2] === 'start') &&
  !CORE_V8_FLAGS.every((f) => process.execArgv.includes(f)) &&
  typeof process.execve === 'function'
) {
  try {
    process.execve(process.execPath, [process.execPath, ...CORE_V8_FLAGS, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)]);
  } catch {
    // runs without them: the core works the same, with a higher peak at its first SQL parse
  }
}
// The bundled core when it is fresh (scripts/core-bundle.mjs): no type stripping to pay for, ~18 MB less.
const root = fileURLToPath(new URL('..', import.meta.url));
if (bundleIsFresh(root)) {
  const { main } = await import(new URL(`../${HEADLESS_BUNDLE}`, import.meta.url).href);
  await main(process.argv.slice(2));
} else if (process.features.typescript) {
  const { main } = await import(cli);
  await main(process.argv.slice(2));
} else {
  const r = spawnSync(process.execPath, [...process.execArgv, '--experimental-strip-types', '--no-warnings', cli, ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  process.exit(r.status ?? 1);
}
