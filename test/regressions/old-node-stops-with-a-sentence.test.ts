/**
 * Where the Node that `npm install` brings is missing (a clone not installed yet, install scripts turned
 * off), the machine's Node 20 reaches the project: every entry point stops with one sentence naming the
 * version it needs and how to get it, never ERR_UNKNOWN_FILE_EXTENSION at the first .ts file.
 * Run in a copy of the project's entry points with no node_modules beside them.
 */
import { execFile, execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, sep } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/ui.ts';

const run = promisify(execFile);

const node20 = ['/usr/bin/node', '/usr/local/bin/node']
  .filter((p) => existsSync(p))
  .find((p) => execFileSync(p, ['--version'], { encoding: 'utf8' }).startsWith('v20.'));
if (!node20) console.log('[old node] skipped: no Node.js 20.x in /usr/bin or /usr/local/bin');

const work = mkdtempSync(join(tmpdir(), 'cs-old-node-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
for (const p of ['package.json', 'bin', 'scripts', 'main', 'common', 'lab']) cpSync(join(REPO_ROOT, p), join(work, p), { recursive: true });

const SENTENCE = /^Countersign needs Node\.js 22\.12 or newer and this is v20\.\d+\.\d+ \(.+\): run `npm install` in .+, which brings Node\.js 24 into node_modules\/\.bin for npm's scripts \(install scripts must be allowed\), or install Node\.js 24 from https:\/\/nodejs\.org\.\n$/;

/** Node 20 first on PATH, nothing of the test runner's npm. */
function env(): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!/^(npm_|INIT_CWD$|NODE$)/i.test(k)) e[k] = v;
  e.PATH = [dirname(node20!), ...(process.env.PATH ?? '').split(delimiter).filter((d) => !d.includes(`node_modules${sep}.bin`))].join(delimiter);
  return e;
}

async function fails(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    await run(file, args, { cwd: work, env: env() });
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
  throw new Error(`${file} ${args.join(' ')} succeeded on ${node20}`);
}

describe.skipIf(!node20)('the machine\'s Node 20 without the Node that npm install brings', () => {
  it.each(['demo', 'test', 'start', 'serve', 'lab', 'bench'])('npm run %s stops before any .ts file, with the sentence', async (script) => {
    const r = await fails('npm', ['run', script]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(SENTENCE);
    expect(r.stderr + r.stdout).not.toMatch(/ERR_UNKNOWN_FILE_EXTENSION/);
  });

  it('bin/countersign.mjs says the sentence and nothing else', async () => {
    const r = await fails(node20!, ['bin/countersign.mjs', 'mcp-config']);
    expect(r).toMatchObject({ code: 1, stdout: '' });
    expect(r.stderr).toMatch(SENTENCE);
  });
});
