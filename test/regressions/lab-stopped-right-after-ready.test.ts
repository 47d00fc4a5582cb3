/**
 * Regression: `npm run lab --json` installed its SIGTERM handler only after printing its ready line, so
 * a script that stopped the lab the moment it read that line could kill it by the default action on a
 * busy machine, leaving PostgreSQL and the lab's directories behind. Stopped on the very first byte of
 * output, the lab must still exit 0.
 */
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';

describe('the lab stopped the moment it says it is ready', () => {
  it('exits 0 every time', async () => {
    for (let round = 0; round < 3; round++) {
      const child = spawn(process.execPath, ['lab/cli.ts', '--json'], { cwd: new URL('../..', import.meta.url).pathname, stdio: ['ignore', 'pipe', 'pipe'] });
      const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
      child.stdout.once('data', () => child.kill('SIGTERM'));
      expect(await exited).toBe(0);
    }
  });
});
