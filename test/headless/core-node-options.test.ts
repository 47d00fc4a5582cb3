/**
 * Every launcher of a headless core gives Node the core's options (CORE_NODE_OPTIONS): the npm scripts
 * the README names, the command the bridge starts when no app answers, and the `countersign` command
 * itself when it is run without them (`npx countersign serve`). V8 reads them only at start,
 * so a launcher that leaves them out runs a core that peaks ~300 MB higher at its first SQL parse
 * (measured by `npm run bench`, not here).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
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

  describe('when `countersign` is run without them', () => {
    // A probe loaded into every Node process of the run (NODE_OPTIONS --import) writes down how it was
    // started, so a process that replaces itself is seen twice, under the same pid.
    const probe = join(work, 'probe.mjs');
    const runBin = async (args: string[]): Promise<{ pid: number; execArgv: string[]; argv: string[] }[]> => {
      const { writeFileSync } = await import('node:fs');
      const seen = join(work, `seen-${args[0]}.jsonl`);
      writeFileSync(
        probe,
        `import { appendFileSync } from 'node:fs';\nappendFileSync(process.env.PROBE_OUT, JSON.stringify({ pid: process.pid, execArgv: process.execArgv, argv: process.argv.slice(2) }) + '\\n');\n`,
      );
      writeFileSync(seen, '');
      await new Promise<void>((resolve) => {
        const child = spawn(process.execPath, [join(ROOT, 'bin', 'countersign.mjs'), ...args], {
          env: {
            PATH: process.env.PATH ?? '',
            COUNTERSIGN_HOME: join(work, `home-${args[0]}`),
            NODE_OPTIONS: `--import=${pathToFileURL(probe).href}`,
            PROBE_OUT: seen,
          },
          stdio: 'ignore',
        });
        child.on('exit', () => resolve());
      });
      return readFileSync(seen, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as { pid: number; execArgv: string[]; argv: string[] });
    };

    it.skipIf(typeof (process as { execve?: unknown }).execve !== 'function')('serve replaces its process with one that has them, keeping its pid', async () => {
      // A configuration file that does not parse, so serve stops at once with CONFIG_INVALID: after the
      // switch. (With no file at all it would stay up, serving the setup screen.)
      const { mkdirSync, writeFileSync } = await import('node:fs');
      mkdirSync(join(work, 'home-serve'), { recursive: true, mode: 0o700 });
      writeFileSync(join(work, 'home-serve', 'config.json'), '{ "idp": ', { mode: 0o600 });
      const runs = await runBin(['serve']);
      expect(runs).toHaveLength(2);
      expect(runs[0]!.execArgv).not.toContain('--liftoff-only');
      expect(runs[1]!.pid).toBe(runs[0]!.pid);
      expect(runs[1]!.execArgv.filter((a) => !a.startsWith('--import='))).toEqual([...CORE_NODE_OPTIONS]);
      expect(runs[1]!.argv).toEqual(['serve']);
    });

    it('commands that do not host the core run as they are', async () => {
      const runs = await runBin(['mcp-config']);
      expect(runs).toHaveLength(1);
      expect(runs[0]!.execArgv).not.toContain('--liftoff-only');
    });

    it('the command names the same options as CORE_NODE_OPTIONS', () => {
      const bin = readFileSync(join(ROOT, 'bin', 'countersign.mjs'), 'utf8');
      expect(JSON.parse(/const CORE_V8_FLAGS = (\[[^\]]*\]);/.exec(bin)![1]!.replace(/'/g, '"'))).toEqual([...CORE_NODE_OPTIONS]);
    });
  });
});
