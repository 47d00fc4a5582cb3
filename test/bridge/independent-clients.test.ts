import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSocketServer, type SocketServer } from '../../main/core/mcp/socket-server.ts';
import { fixtureToolHost } from '../core/mcp/fixtures/tool-host.ts';
import { ROOT, buildBridgeInto, quietLog, tempHome } from './helpers.ts';

const run = promisify(execFile);
const INSPECTOR = join(ROOT, 'node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js');
const MCPB = join(ROOT, 'node_modules/@anthropic-ai/mcpb/dist/cli/cli.js');

let work: string;
let bridgePath: string;
let home: ReturnType<typeof tempHome>;
let server: SocketServer;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'cs-clients-'));
  bridgePath = buildBridgeInto(work);
  home = tempHome();
  server = await startSocketServer({ paths: home.paths, toolHost: fixtureToolHost(), log: quietLog });
});
afterAll(async () => {
  await server.close();
  home.cleanup();
  rmSync(work, { recursive: true, force: true });
});

describe('independent MCP clients', () => {
  it('the MCP Inspector CLI lists the tools through the bridge', async () => {
    const { stdout } = await run(
      process.execPath,
      [INSPECTOR, '--cli', '-e', `COUNTERSIGN_HOME=${home.home}`, process.execPath, bridgePath, '--method', 'tools/list'],
      { timeout: 30_000 },
    );
    const { tools } = JSON.parse(stdout) as { tools: Array<{ name: string }> };
    expect(tools.map((t) => t.name)).toEqual(['echo', 'wait', 'fail']);
  });

  it('the MCP Inspector CLI calls a tool through the bridge', async () => {
    const { stdout } = await run(
      process.execPath,
      [
        INSPECTOR,
        '--cli',
        '-e',
        `COUNTERSIGN_HOME=${home.home}`,
        process.execPath,
        bridgePath,
        '--method',
        'tools/call',
        '--tool-name',
        'echo',
        '--tool-arg',
        'text=from the inspector',
      ],
      { timeout: 30_000 },
    );
    expect(JSON.parse(stdout)).toEqual({ content: [{ type: 'text', text: 'from the inspector' }] });
  });

  it('the MCP Bundle validates, packs, and the bridge inside it serves a call as the manifest launches it', async () => {
    execFileSync(process.execPath, [MCPB, 'validate', join(ROOT, 'mcpb/manifest.json')], { stdio: 'pipe' });
    const bundle = join(work, 'countersign.mcpb');
    execFileSync(process.execPath, [join(ROOT, 'scripts/build-bridge.mjs'), '--mcpb', bundle], { stdio: 'pipe' });
    const unpacked = join(work, 'unpacked');
    execFileSync(process.execPath, [MCPB, 'unpack', bundle, unpacked], { stdio: 'pipe' });
    const manifest = JSON.parse(readFileSync(join(unpacked, 'manifest.json'), 'utf8'));
    const config = manifest.server.mcp_config as { command: string; args: string[] };
    const transport = new StdioClientTransport({
      command: config.command === 'node' ? process.execPath : config.command,
      args: config.args.map((a) => a.replace('${__dirname}', unpacked)),
      env: { ...getDefaultEnvironment(), COUNTERSIGN_HOME: home.home },
    });
    const client = new Client({ name: 'bundle-host', version: '0' });
    await client.connect(transport);
    try {
      const result = await client.callTool({ name: 'echo', arguments: { text: 'from the bundle' } });
      expect(result.content).toEqual([{ type: 'text', text: 'from the bundle' }]);
    } finally {
      await client.close();
    }
  });
});
