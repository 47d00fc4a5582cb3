/**
 * Every launcher of a headless core gives Node the core's options (CORE_NODE_OPTIONS): the npm scripts
 * the README names and the command the bridge starts when no app answers. V8 reads them only at start,
 * so a launcher that leaves them out runs a core that peaks ~300 MB higher at its first SQL parse
 * (measured by `npm run bench`, not here).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CORE_NODE_OPTIONS } from '../../main/headless/start.ts';
import { buildBridgeInto, INIT, ROOT } from '../bridge/helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'cs-core-options-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the Node options of a headless core', () => {
  it('are given by npm start, npm run serve and npm run demo', () => {
    const scripts = (
      JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
    ).scripts;
    for (const name of ['start', 'serve', 'demo']) {
      const node = /(?:^|&& )node (.+?) (?:bin\/countersign\.mjs|lab\/demo\.ts)/.exec(scripts[name]!);
      expect(node?.[1]?.split(' '), name).toEqual([...CORE_NODE_OPTIONS]);
    }
  });

  it('are given by the bridge when it starts the app itself', async () => {
    // The bridge's own default command, with `serve` swapped for a stand-in that prints its options.
    const bridgePath = buildBridgeInto(join(work, 'dist'));
    const probe = join(work, 'bin', 'countersign.mjs');
    const { mkdirSync, writeFileSync } = await import('node:fs');
    mkdirSync(join(work, 'bin'), { recursive: true });
    const seen = join(work, 'seen.json');
    writeFileSync(
      probe,
      `import { writeFileSync } from 'node:fs';\nwriteFileSync(${JSON.stringify(seen)}, JSON.stringify({ execArgv: process.execArgv, argv: process.argv.slice(2) }));\n`,
    );
    const child = spawn(process.execPath, [bridgePath], {
      env: {
        PATH: process.env.PATH ?? '',
        COUNTERSIGN_HOME: join(work, 'home'),
        COUNTERSIGN_APP_WAIT_MS: '1500',
      },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    child.stdin.write(JSON.stringify(INIT) + '\n');
    await expect
      .poll(
        () =>
          (() => {
            try {
              return JSON.parse(readFileSync(seen, 'utf8')) as unknown;
            } catch {
              return null;
            }
          })(),
        { timeout: 10_000 },
      )
      .toEqual({
        execArgv: [...CORE_NODE_OPTIONS],
        argv: ['serve'],
      });
    child.kill();
  });
});
