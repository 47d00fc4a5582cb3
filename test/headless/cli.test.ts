import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);
const bin = new URL('../../bin/countersign.mjs', import.meta.url).pathname;

describe('the countersign command', () => {
  it('prints help listing its subcommands', async () => {
    const { stdout } = await run(process.execPath, [bin, '--help']);
    expect(stdout).toMatch(/Usage: countersign <command>/);
    for (const c of ['serve', 'start', 'mcp-config', 'audit']) expect(stdout).toContain(`  ${c}`);
  });

  it('prints its version from package.json', async () => {
    const { stdout } = await run(process.execPath, [bin, '--version']);
    expect(stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });

  it('exits 2 with help on an unknown command', async () => {
    const error = await run(process.execPath, [bin, 'frobnicate']).catch((e: { code: number; stderr: string }) => e);
    expect(error).toMatchObject({ code: 2 });
    expect((error as { stderr: string }).stderr).toContain('unknown command "frobnicate"');
  });
});
