/**
 * `countersign mcp-config`: prints the `mcpServers` entry that launches the bridge (for Claude Code,
 * Cursor and other MCP clients), or with `--install` writes it into Claude Desktop's configuration.
 *
 *   countersign mcp-config                 print {"mcpServers":{"countersign":{…}}}
 *   countersign mcp-config --install       add/update the entry in claude_desktop_config.json
 *   countersign mcp-config --install --config <path>
 *   countersign mcp-config --uninstall     remove only our entry
 */
import { homedir } from 'node:os';
import { parseArgs } from 'node:util';
import { AppError } from '../../../common/errors.ts';
import {
  SERVER_NAME,
  claudeDesktopConfigPath,
  installClaudeDesktopEntry,
  mcpConfigEntry,
  removeClaudeDesktopEntry,
} from './config.ts';

export interface CommandIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env?: Readonly<Record<string, string | undefined>>;
}

/** Returns the process exit code. */
export async function runMcpConfig(
  argv: string[],
  io: CommandIo = { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) },
): Promise<number> {
  const env = io.env ?? process.env;
  let values: { install?: boolean; uninstall?: boolean; config?: string; bridge?: string; node?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        install: { type: 'boolean' },
        uninstall: { type: 'boolean' },
        config: { type: 'string' },
        bridge: { type: 'string' },
        node: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch {
    io.stderr('Usage: countersign mcp-config [--install | --uninstall] [--config <path>] [--bridge <path>] [--node <path>]\n');
    return 2;
  }
  if (values.help) {
    io.stdout('Usage: countersign mcp-config [--install | --uninstall] [--config <path>] [--bridge <path>] [--node <path>]\n');
    return 0;
  }
  const entry = mcpConfigEntry({ bridgePath: values.bridge, nodePath: values.node, countersignHome: env.COUNTERSIGN_HOME || undefined });
  if (!values.install && !values.uninstall) {
    io.stdout(JSON.stringify({ mcpServers: { [SERVER_NAME]: entry } }, null, 2) + '\n');
    return 0;
  }
  const configPath = values.config ?? claudeDesktopConfigPath({ platform: process.platform, env, home: homedir() });
  try {
    const result = values.uninstall ? await removeClaudeDesktopEntry(configPath) : await installClaudeDesktopEntry(configPath, entry);
    const what = values.uninstall ? 'Removed Countersign from' : 'Connected Countersign to';
    io.stdout(result.changed ? `${what} ${result.configPath}${result.backupPath ? ` (backup: ${result.backupPath})` : ''}.\n` : `${result.configPath} already up to date.\n`);
    if (result.changed) io.stdout('Restart Claude Desktop to pick up the change.\n');
    return 0;
  } catch (error) {
    io.stderr(`${AppError.from(error).message}\n`);
    return 1;
  }
}
