/**
 * `countersign` runs the bundled core (dist/core/headless.mjs) only while it is fresh, and its sources
 * otherwise: the freshness check on real files and mtimes, then the command itself, whose loaded
 * modules Node lists under NODE_DEBUG=esm.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { HEADLESS_BUNDLE, HEADLESS_INPUTS, bundleIsFresh, coreBundleOptions } from '../../scripts/core-bundle.mjs';
import { ROOT } from '../bridge/helpers.ts';

const work = mkdtempSync(join(tmpdir(), 'cs-core-bundle-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function fakeRoot(name: string): { root: string; at(seconds: number, file: string): void } {
  const root = join(work, name);
  mkdirSync(join(root, 'dist/core'), { recursive: true });
  mkdirSync(join(root, 'main'), { recursive: true });
  writeFileSync(join(root, 'main/a.ts'), 'export const a = 1;\n');
  writeFileSync(join(root, 'main/b.ts'), 'export const b = 2;\n');
  writeFileSync(join(root, HEADLESS_BUNDLE), 'export {};\n');
  writeFileSync(join(root, HEADLESS_INPUTS), JSON.stringify(['main/a.ts', 'main/b.ts']));
  const at = (seconds: number, file: string) => utimesSync(join(root, file), seconds, seconds);
  at(1_000, 'main/a.ts');
  at(1_000, 'main/b.ts');
  at(2_000, HEADLESS_BUNDLE);
  return { root, at };
}

describe('the bundled headless core', () => {
  it('is fresh only while every source it was built from is present and not newer', () => {
    const { root, at } = fakeRoot('fresh');
    expect(bundleIsFresh(root)).toBe(true);
    at(3_000, 'main/b.ts');
    expect(bundleIsFresh(root)).toBe(false);
  });

  it('is not fresh when a source is gone, the list is unreadable or empty, or there is no bundle', () => {
    const gone = fakeRoot('gone');
    rmSync(join(gone.root, 'main/a.ts'));
    expect(bundleIsFresh(gone.root)).toBe(false);
    const torn = fakeRoot('torn');
    writeFileSync(join(torn.root, HEADLESS_INPUTS), '["main/a.ts",');
    expect(bundleIsFresh(torn.root)).toBe(false);
    const empty = fakeRoot('empty');
    writeFileSync(join(empty.root, HEADLESS_INPUTS), '[]');
    expect(bundleIsFresh(empty.root)).toBe(false);
    const none = fakeRoot('none');
    rmSync(join(none.root, HEADLESS_BUNDLE));
    expect(bundleIsFresh(none.root)).toBe(false);
  });

  it('is what `countersign` runs after `npm run build`, with no TypeScript module loaded', async () => {
    if (!bundleIsFresh(ROOT)) {
      // Run alone after an edit: build it as `npm run build` does (npm test builds before any test).
      const { build } = await import('esbuild');
      const result = await build(coreBundleOptions({ root: ROOT, entry: 'main/headless/cli.ts', outfile: HEADLESS_BUNDLE }));
      writeFileSync(join(ROOT, HEADLESS_INPUTS), JSON.stringify(Object.keys(result.metafile!.inputs)) + '\n');
    }
    expect(bundleIsFresh(ROOT)).toBe(true);
    const run = spawnSync(process.execPath, [join(ROOT, 'bin/countersign.mjs'), 'help'], { env: { ...process.env, NODE_DEBUG: 'esm' }, encoding: 'utf8', maxBuffer: 64 * 2 ** 20 });
    expect(run.status).toBe(0);
    expect(run.stdout).toContain('Usage: countersign <command>');
    const modules = [...run.stderr.matchAll(/file:\/\/\S+?\.(?:mjs|ts)\b/g)].map((m) => m[0]);
    expect(modules.some((m) => m.endsWith(`/${HEADLESS_BUNDLE}`))).toBe(true);
    expect(modules.filter((m) => m.endsWith('.ts'))).toEqual([]);
    // Paths the core finds from its own module still point into the project when it runs bundled.
    const entry = spawnSync(process.execPath, [join(ROOT, 'bin/countersign.mjs'), 'mcp-config'], { env: { ...process.env, COUNTERSIGN_HOME: join(work, 'home') }, encoding: 'utf8' });
    expect(entry.status).toBe(0);
    expect((JSON.parse(entry.stdout) as { mcpServers: { countersign: { args: string[] } } }).mcpServers.countersign.args).toEqual([join(ROOT, 'dist/bridge.mjs')]);
  });
});
