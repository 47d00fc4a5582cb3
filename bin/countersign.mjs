#!/usr/bin/env node
// Entry point of the `countersign` command. The sources are TypeScript that Node runs directly
// (type stripping, unflagged since Node 22.18); older 22.x gets the flag.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../main/headless/cli.ts', import.meta.url));

// The commands that host the core want V8's options for it (main/core/v8-flags.ts, CORE_V8_FLAGS; a
// test holds the two lists together). The npm scripts and the bridge give them on the command line; run
// any other way (`npx countersign serve`, a global install), the process replaces itself with one that
// has them, keeping its pid, where Node can (process.execve: POSIX, Node 22.15+). Elsewhere it runs as is.
const CORE_V8_FLAGS = ['--liftoff-only'];
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
if (process.features.typescript) {
  const { main } = await import(cli);
  await main(process.argv.slice(2));
} else {
  const r = spawnSync(process.execPath, [...process.execArgv, '--experimental-strip-types', '--no-warnings', cli, ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  process.exit(r.status ?? 1);
}
