#!/usr/bin/env node
// Entry point of the `countersign` command. The sources are TypeScript that Node runs directly
// (type stripping, unflagged since Node 22.18); older 22.x gets the flag.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const cli = fileURLToPath(new URL('../main/headless/cli.ts', import.meta.url));
if (process.features.typescript) {
  const { main } = await import(cli);
  await main(process.argv.slice(2));
} else {
  const r = spawnSync(process.execPath, ['--experimental-strip-types', '--no-warnings', cli, ...process.argv.slice(2)], {
    stdio: 'inherit',
  });
  process.exit(r.status ?? 1);
}
