/**
 * `countersign mcp-config` for the MCP clients beside Claude Desktop: Claude Code (user scope in
 * ~/.claude.json, a project's .mcp.json, or the `claude mcp add` line) and Cursor (~/.cursor/mcp.json).
 * Each writes into a temporary home, and the entry it writes is launched as the client launches it.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runMcpConfig } from '../../../main/core/claude-desktop/command.ts';
import { mcpClientConfigPath } from '../../../main/core/claude-desktop/config.ts';
import { startSocketServer } from '../../../main/core/mcp/socket-server.ts';
import { buildBridgeInto, quietLog, tempHome } from '../../bridge/helpers.ts';
import { fixtureToolHost } from '../mcp/fixtures/tool-host.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
function dir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cs-clients-home-'));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
}
function io(home: string, env: Record<string, string> = {}) {
  const out: string[] = [];
  const err: string[] = [];
  return { out, err, io: { stdout: (t: string) => void out.push(t), stderr: (t: string) => void err.push(t), env, home } };
}
const readJson = (path: string) => JSON.parse(readFileSync(path, 'utf8'));

/** A core with the fixture tools, and a freshly built bridge: what an installed entry must reach. */
async function coreAndBridge() {
  const h = tempHome();
  cleanups.push(() => h.cleanup());
  const server = await startSocketServer({ paths: h.paths, toolHost: fixtureToolHost(), log: quietLog });
  cleanups.push(() => server.close());
  return { countersignHome: h.home, bridgePath: buildBridgeInto(dir()) };
}

/** Starts the server as the client does from its entry (command, args, env) and calls a tool. */
async function callThrough(entry: { command: string; args: string[]; env?: Record<string, string> }): Promise<unknown> {
  const client = new Client({ name: 'client-under-test', version: '0' });
  await client.connect(new StdioClientTransport({ command: entry.command, args: entry.args, env: { ...getDefaultEnvironment(), ...entry.env } }));
  cleanups.push(() => client.close());
  return (await client.callTool({ name: 'echo', arguments: { text: 'through the entry' } })).content;
}

describe('countersign mcp-config for Claude Code and Cursor', () => {
  it("finds each client's file from the user's home", () => {
    const input = { platform: 'linux', env: {}, home: '/home/u' };
    expect(mcpClientConfigPath('claude-code', input)).toBe('/home/u/.claude.json');
    expect(mcpClientConfigPath('cursor', input)).toBe('/home/u/.cursor/mcp.json');
    expect(mcpClientConfigPath('claude-desktop', input)).toBe('/home/u/.config/Claude/claude_desktop_config.json');
  });

  it("Cursor: --install writes ~/.cursor/mcp.json, keeps the user's other servers, and the entry launches the bridge", async () => {
    const home = dir();
    const { countersignHome, bridgePath } = await coreAndBridge();
    mkdirSync(join(home, '.cursor'));
    const theirs = { mcpServers: { github: { url: 'https://api.githubcopilot.com/mcp/' } } };
    writeFileSync(join(home, '.cursor', 'mcp.json'), JSON.stringify(theirs));
    const t = io(home, { COUNTERSIGN_HOME: countersignHome });
    expect(await runMcpConfig(['--install', '--client', 'cursor', '--bridge', bridgePath], t.io)).toBe(0);
    expect(t.out.join('')).toMatch(/Restart Cursor/);
    const written = readJson(join(home, '.cursor', 'mcp.json'));
    expect(written.mcpServers.github).toEqual(theirs.mcpServers.github);
    expect(written.mcpServers.countersign).toEqual({ command: process.execPath, args: [bridgePath], env: { COUNTERSIGN_HOME: countersignHome } });
    expect(await callThrough(written.mcpServers.countersign)).toEqual([{ type: 'text', text: 'through the entry' }]);

    expect(await runMcpConfig(['--uninstall', '--client', 'cursor'], io(home).io)).toBe(0);
    expect(readJson(join(home, '.cursor', 'mcp.json'))).toEqual(theirs);
  });

  it("Claude Code: --install adds a stdio server to ~/.claude.json's user scope and keeps every other key", async () => {
    const home = dir();
    const { countersignHome, bridgePath } = await coreAndBridge();
    const state = {
      numStartups: 12,
      projects: { '/work/app': { mcpServers: { local: { type: 'stdio', command: 'x', args: [] } }, allowedTools: [] } },
      mcpServers: { context7: { type: 'stdio', command: 'npx', args: ['-y', '@upstash/context7-mcp'] } },
    };
    writeFileSync(join(home, '.claude.json'), JSON.stringify(state));
    const t = io(home, { COUNTERSIGN_HOME: countersignHome });
    expect(await runMcpConfig(['--install', '--client', 'claude-code', '--bridge', bridgePath], t.io)).toBe(0);
    expect(t.out.join('')).toMatch(/new Claude Code session/);
    const written = readJson(join(home, '.claude.json'));
    expect(written).toMatchObject({ numStartups: 12, projects: state.projects });
    expect(written.mcpServers.context7).toEqual(state.mcpServers.context7);
    expect(written.mcpServers.countersign).toEqual({ type: 'stdio', command: process.execPath, args: [bridgePath], env: { COUNTERSIGN_HOME: countersignHome } });
    expect(await callThrough(written.mcpServers.countersign)).toEqual([{ type: 'text', text: 'through the entry' }]);
  });

  it("Claude Code: --config writes a project's .mcp.json of the same shape", async () => {
    const project = dir();
    const t = io(dir());
    expect(await runMcpConfig(['--install', '--client', 'claude-code', '--config', join(project, '.mcp.json'), '--bridge', '/b/bridge.mjs', '--node', '/n/node'], t.io)).toBe(0);
    expect(readJson(join(project, '.mcp.json'))).toEqual({ mcpServers: { countersign: { type: 'stdio', command: '/n/node', args: ['/b/bridge.mjs'] } } });
  });

  it('Claude Code: prints the `claude mcp add` line, which a shell splits back into exactly the entry', async () => {
    const odd = "/Users/Jo O'Neil/Count ersign";
    const t = io(dir(), { COUNTERSIGN_HOME: `${odd}/home` });
    expect(await runMcpConfig(['--client', 'claude-code', '--bridge', `${odd}/dist/bridge.mjs`, '--node', `${odd}/node`], t.io)).toBe(0);
    const line = t.out.join('').trim();
    expect(line).toMatch(/^claude mcp add --transport stdio --scope user countersign --env /);
    // the shell's own word splitting, not a parser of ours: print each word NUL-separated
    const words = execFileSync('sh', ['-c', `set -- ${line}; printf '%s\\0' "$@"`], { encoding: 'utf8' }).split('\0').slice(0, -1);
    expect(words).toEqual([
      'claude', 'mcp', 'add', '--transport', 'stdio', '--scope', 'user', 'countersign',
      '--env', `COUNTERSIGN_HOME=${odd}/home`, '--', `${odd}/node`, `${odd}/dist/bridge.mjs`,
    ]);
  });

  it('refuses a client it does not know, naming the ones it does', async () => {
    const t = io(dir());
    expect(await runMcpConfig(['--install', '--client', 'vscode'], t.io)).toBe(2);
    expect(t.err.join('')).toMatch(/unknown client "vscode"; one of claude-desktop, claude-code, cursor/);
  });
});
