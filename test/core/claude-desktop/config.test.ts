import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AppError } from '../../../common/errors.ts';
import { runMcpConfig } from '../../../main/core/claude-desktop/command.ts';
import {
  bridgePathFor,
  claudeDesktopConfigPath,
  findNodeOnPath,
  installClaudeDesktopEntry,
  mcpConfigEntry,
  removeClaudeDesktopEntry,
} from '../../../main/core/claude-desktop/config.ts';
import { startSocketServer } from '../../../main/core/mcp/socket-server.ts';
import { buildBridgeInto, quietLog, tempHome } from '../../bridge/helpers.ts';
import { fixtureToolHost } from '../mcp/fixtures/tool-host.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
function dir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cs-claude-'));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}

const entry = mcpConfigEntry({ bridgePath: '/opt/countersign/dist/bridge.mjs', nodePath: '/usr/bin/node', countersignHome: '/home/u/.cs' });
const theirs = {
  globalShortcut: 'Ctrl+Space',
  mcpServers: {
    filesystem: { command: 'npx', args: ['-y', '@modelcontextprotocol/server-filesystem', '/home/u'] },
    countersign: { command: 'old-node', args: ['/old/bridge.mjs'] },
  },
  preferences: { theme: 'dark', nested: { keep: [1, 2, 3] } },
};

describe('Claude Desktop configuration', () => {
  it('uses the path Claude Desktop reads on each OS', () => {
    expect(claudeDesktopConfigPath({ platform: 'darwin', env: {}, home: '/Users/u' })).toBe(
      '/Users/u/Library/Application Support/Claude/claude_desktop_config.json',
    );
    expect(claudeDesktopConfigPath({ platform: 'linux', env: {}, home: '/home/u' })).toBe('/home/u/.config/Claude/claude_desktop_config.json');
    expect(claudeDesktopConfigPath({ platform: 'linux', env: { XDG_CONFIG_HOME: '/x' }, home: '/home/u' })).toBe('/x/Claude/claude_desktop_config.json');
  });

  it('builds an entry that runs the bundled bridge with node and passes COUNTERSIGN_HOME', () => {
    expect(entry).toEqual({ command: '/usr/bin/node', args: ['/opt/countersign/dist/bridge.mjs'], env: { COUNTERSIGN_HOME: '/home/u/.cs' } });
    const plain = mcpConfigEntry({ bridgePath: '/b.mjs' });
    expect(plain).toEqual({ command: process.execPath, args: ['/b.mjs'] });
  });

  it('points the packaged app at the bridge electron-builder ships beside app.asar, which a plain node can read', () => {
    // Electron's process.resourcesPath, which cannot exist here (no Electron binary): a stand-in value.
    const resources = '/opt/Countersign/resources';
    const packaged = bridgePathFor('file:///opt/Countersign/resources/app.asar/dist/core/core.mjs', resources);
    expect(packaged).toBe('/opt/Countersign/resources/bridge/bridge.mjs');
    // The same place electron-builder.yml copies dist/bridge.mjs to.
    const builder = readFileSync(join(import.meta.dirname, '../../../electron-builder.yml'), 'utf8');
    const shipped = /- from: dist\/bridge\.mjs\s+to: (\S+)/.exec(builder)?.[1];
    expect(shipped).toBeDefined();
    expect(packaged).toBe(join(resources, shipped!));
    // Unpackaged: the built bridge next to the source tree or the bundled core, as before.
    expect(bridgePathFor('file:///src/countersign/main/core/claude-desktop/config.ts', undefined)).toBe('/src/countersign/dist/bridge.mjs');
    expect(bridgePathFor('file:///src/countersign/dist/core/core.mjs', resources)).toBe('/src/countersign/dist/bridge.mjs');
  });

  it('takes for the entry the first Node on PATH that can run the bridge, passing over an older one', async () => {
    // A stand-in for a Node older than 20.16 (none is installed here): the check asks the binary for
    // process.getBuiltinModule, which such a Node lacks, and this one answers as it would.
    const old = dir();
    writeFileSync(join(old, 'node'), '#!/bin/sh\nexit 3\n', { mode: 0o755 });
    const real = join(process.execPath, '..');
    expect(await findNodeOnPath({ PATH: `${old}:${real}` })).toBe(join(real, 'node'));
    expect(await findNodeOnPath({ PATH: old })).toBeUndefined();
  });

  it('creates the file with only our entry when Claude Desktop has none yet', async () => {
    const path = join(dir(), 'Claude', 'claude_desktop_config.json');
    const result = await installClaudeDesktopEntry(path, entry);
    expect(result).toMatchObject({ changed: true, backupPath: undefined });
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({ mcpServers: { countersign: entry } });
    expect(statSync(path).mode & 0o777).toBe(0o600);
  });

  it('updates only our entry, keeps every other server and setting, and backs the old file up byte for byte', async () => {
    const d = dir();
    const path = join(d, 'claude_desktop_config.json');
    const original = JSON.stringify(theirs, null, 4);
    writeFileSync(path, original, { mode: 0o644 });
    const result = await installClaudeDesktopEntry(path, entry);
    const written = JSON.parse(readFileSync(path, 'utf8'));
    expect(written).toEqual({ ...theirs, mcpServers: { ...theirs.mcpServers, countersign: entry } });
    expect(readFileSync(result.backupPath!, 'utf8')).toBe(original);
    expect(statSync(path).mode & 0o777).toBe(0o644);
    expect(readdirSync(d).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('leaves the file alone when our entry is already current', async () => {
    const d = dir();
    const path = join(d, 'claude_desktop_config.json');
    await installClaudeDesktopEntry(path, entry);
    const before = readFileSync(path, 'utf8');
    expect(await installClaudeDesktopEntry(path, entry)).toMatchObject({ changed: false });
    expect(readFileSync(path, 'utf8')).toBe(before);
    expect(readdirSync(d)).toEqual(['claude_desktop_config.json']);
  });

  it('refuses a file that is not valid JSON, says so, and leaves it untouched without a backup', async () => {
    const d = dir();
    const path = join(d, 'claude_desktop_config.json');
    const broken = '{ "mcpServers": { "filesystem": { "command": "npx", } ';
    writeFileSync(path, broken);
    const error = await installClaudeDesktopEntry(path, entry).catch((e: unknown) => e);
    expect(AppError.is(error, 'CONFIG_INVALID')).toBe(true);
    expect((error as AppError).message).toMatch(/is not valid JSON, so Countersign left it unchanged/);
    expect(readFileSync(path, 'utf8')).toBe(broken);
    expect(readdirSync(d)).toEqual(['claude_desktop_config.json']);
  });

  it('refuses a file whose mcpServers is not an object', async () => {
    const path = join(dir(), 'claude_desktop_config.json');
    writeFileSync(path, JSON.stringify({ mcpServers: ['x'] }));
    await expect(installClaudeDesktopEntry(path, entry)).rejects.toMatchObject({ code: 'CONFIG_INVALID' });
  });

  it('removes only our entry', async () => {
    const path = join(dir(), 'claude_desktop_config.json');
    writeFileSync(path, JSON.stringify(theirs));
    await removeClaudeDesktopEntry(path);
    const { countersign: _gone, ...others } = theirs.mcpServers;
    expect(JSON.parse(readFileSync(path, 'utf8'))).toEqual({ ...theirs, mcpServers: others });
  });
});

describe('countersign mcp-config', () => {
  function io(env: Record<string, string> = {}) {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { stdout: (t: string) => void out.push(t), stderr: (t: string) => void err.push(t), env } };
  }

  it('prints the entry for other MCP clients', async () => {
    const t = io({ COUNTERSIGN_HOME: '/srv/cs' });
    expect(await runMcpConfig(['--bridge', '/b/bridge.mjs', '--node', '/n/node'], t.io)).toBe(0);
    expect(JSON.parse(t.out.join(''))).toEqual({
      mcpServers: { countersign: { command: '/n/node', args: ['/b/bridge.mjs'], env: { COUNTERSIGN_HOME: '/srv/cs' } } },
    });
  });

  it('exits 1 with the reason when the Claude Desktop file is broken, and 2 on unknown flags', async () => {
    const path = join(dir(), 'claude_desktop_config.json');
    writeFileSync(path, 'not json');
    const t = io();
    expect(await runMcpConfig(['--install', '--config', path], t.io)).toBe(1);
    expect(t.err.join('')).toMatch(/not valid JSON/);
    expect(await runMcpConfig(['--frobnicate'], io().io)).toBe(2);
  });

  it('installs an entry that Claude Desktop can launch: the bridge it names reaches the core and calls a tool', async () => {
    const d = dir();
    const home = tempHome();
    cleanups.push(() => home.cleanup());
    const bridgePath = buildBridgeInto(d);
    const server = await startSocketServer({ paths: home.paths, toolHost: fixtureToolHost(), log: quietLog });
    cleanups.push(() => server.close());
    const path = join(d, 'claude_desktop_config.json');
    writeFileSync(path, JSON.stringify(theirs));
    const t = io({ COUNTERSIGN_HOME: home.home });
    expect(await runMcpConfig(['--install', '--config', path, '--bridge', bridgePath], t.io)).toBe(0);
    expect(t.out.join('')).toMatch(/Restart Claude Desktop/);

    const written = JSON.parse(readFileSync(path, 'utf8')).mcpServers.countersign;
    const transport = new StdioClientTransport({ command: written.command, args: written.args, env: { ...getDefaultEnvironment(), ...written.env } });
    const client = new Client({ name: 'claude-ai', version: '0.0.0' });
    await client.connect(transport);
    cleanups.push(() => client.close());
    const result = await client.callTool({ name: 'echo', arguments: { text: 'one click' } });
    expect(result.content).toEqual([{ type: 'text', text: 'one click' }]);
  });
});
