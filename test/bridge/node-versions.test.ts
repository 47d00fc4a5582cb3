/**
 * Which Node the bundled bridge runs on. Claude Desktop starts it with a `node` it finds (or its own,
 * for the .mcpb bundle), so the bridge must run on the oldest Node it declares and say clearly when
 * the Node is older than that.
 */
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { MINIMUM_NODE } from '../../bridge/node-check.ts';
import { INIT, ROOT, buildBridgeInto } from './helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'cs-bridge-node-'));
const bridgePath = buildBridgeInto(work);
afterAll(() => rmSync(work, { recursive: true, force: true }));

const older = (a: string, b: string): boolean => {
  const [x, y] = [a, b].map((v) => v.replace(/^v/, '').split('.').map(Number));
  for (let i = 0; i < 3; i++) if (x![i] !== y![i]) return x![i]! < y![i]!;
  return false;
};

/** An older Node on this machine than the one running the tests, if it meets the minimum (Debian's, here). */
const olderNode = ['/usr/bin/node', '/usr/local/bin/node']
  .filter((p) => existsSync(p))
  .map((path) => ({ path, version: execFileSync(path, ['--version'], { encoding: 'utf8' }).trim() }))
  .find((n) => older(n.version, process.version) && !older(n.version, MINIMUM_NODE));

function runBridge(node: string, args: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(node, [...args, bridgePath], {
      env: { PATH: process.env.PATH ?? '', COUNTERSIGN_HOME: join(work, 'home'), COUNTERSIGN_APP_CMD: '[]', COUNTERSIGN_APP_WAIT_MS: '200' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      if (stdout.includes('\n')) child.stdin.end();
    });
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
    child.stdin.write(JSON.stringify(INIT) + '\n');
  });
}

describe('the bundle', () => {
  it('builds from any working directory (its check of what was bundled does not depend on the cwd)', () => {
    const out = join(work, 'elsewhere.mjs');
    execFileSync(process.execPath, [join(ROOT, 'scripts/build-bridge.mjs'), '--outfile', out], { cwd: tmpdir(), stdio: 'pipe' });
    expect(readFileSync(out, 'utf8')).toBe(readFileSync(bridgePath, 'utf8'));
  });
});

describe('the Node the bridge runs on', () => {
  it('declares in the bundle manifest the same minimum the bridge checks', () => {
    const manifest = JSON.parse(readFileSync(join(ROOT, 'mcpb/manifest.json'), 'utf8')) as { compatibility: { runtimes: { node: string } } };
    expect(manifest.compatibility.runtimes.node).toBe(`>=${MINIMUM_NODE}`);
  });

  it('says on stderr which Node it needs, and writes nothing to stdout, on a Node without process.getBuiltinModule', async () => {
    // what Node before 20.16 / 22.3 looks like to the bundle: the function is absent
    const r = await runBridge(process.execPath, ['--import', 'data:text/javascript,delete process.getBuiltinModule']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`needs Node.js ${MINIMUM_NODE} or newer`);
  });

  it.skipIf(!olderNode)(`answers initialize on this machine's older Node (${olderNode?.version ?? 'none here'})`, async () => {
    const r = await runBridge(olderNode!.path);
    const answer = JSON.parse(r.stdout.split('\n')[0]!) as { id: number; result: { serverInfo: { name: string }; instructions: string } };
    expect(answer).toMatchObject({ id: 0, result: { serverInfo: { name: 'countersign' } } });
    expect(answer.result.instructions).toMatch(/Open Countersign and sign in/);
    expect(r.code).toBe(0);
  });
});
