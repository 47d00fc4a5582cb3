/**
 * The MCP Bundle Claude Desktop installs in one click, checked by the official `mcpb` CLI
 * (@anthropic-ai/mcpb): the manifest passes the strict schema of its manifest version, the bundle packs
 * and `mcpb info` reads it, and it carries the manifest and the bridge only. (Running the bridge from
 * the unpacked bundle is in independent-clients.test.ts.)
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { ROOT } from './helpers.ts';

const run = promisify(execFile);
const MCPB = join(ROOT, 'node_modules/@anthropic-ai/mcpb/dist/cli/cli.js');
const mcpb = (...args: string[]) => run(process.execPath, [MCPB, ...args], { timeout: 60_000 });
const work = mkdtempSync(join(tmpdir(), 'cs-mcpb-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const manifest = JSON.parse(readFileSync(join(ROOT, 'mcpb/manifest.json'), 'utf8')) as Record<string, unknown> & { server: Record<string, unknown> };

function files(dir: string): string[] {
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)))
    .sort();
}

describe('the MCP Bundle, as the mcpb CLI sees it', () => {
  it('passes `mcpb validate`, which refuses a manifest its schema does not allow', async () => {
    expect((await mcpb('validate', join(ROOT, 'mcpb/manifest.json'))).stdout).toMatch(/validation passes/);
    const broken = join(work, 'broken.json');
    writeFileSync(broken, JSON.stringify({ ...manifest, server: { ...manifest.server, type: 'deno' } }));
    await expect(mcpb('validate', broken)).rejects.toMatchObject({ code: 1 });
  });

  it('is of the manifest version the spec calls current, and of the package version', () => {
    // MANIFEST.md of the mcpb repository: "Current version: 0.3" (0.4 only adds the experimental uv server type)
    expect(manifest.manifest_version).toBe('0.3');
    expect(manifest.version).toBe(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version);
  });

  it('packs, `mcpb info` reads the bundle, and it holds the manifest and the bridge only', async () => {
    const bundle = join(work, 'countersign.mcpb');
    await run(process.execPath, [join(ROOT, 'scripts/build-bridge.mjs'), '--mcpb', bundle]);
    const info = await mcpb('info', bundle);
    expect(info.stdout).toMatch(/File: countersign\.mcpb/);
    expect(info.stdout).toMatch(/Size: [\d.]+ KB/);
    const unpacked = join(work, 'unpacked');
    await mcpb('unpack', bundle, unpacked);
    expect(files(unpacked)).toEqual(['manifest.json', join('server', 'bridge.mjs')]);
    expect(JSON.parse(readFileSync(join(unpacked, 'manifest.json'), 'utf8'))).toEqual(manifest);
    expect(manifest.server.entry_point).toBe('server/bridge.mjs');
  });
});
