/**
 * `countersign mcp-config`: prints the `mcpServers` entry that launches the bridge, or with `--install`
 * writes it into an MCP client's configuration (Claude Desktop by default, Claude Code or Cursor).
 *
 *   countersign mcp-config                          print {"mcpServers":{"countersign":{…}}}
 *   countersign mcp-config --client claude-code     print the `claude mcp add` command that adds it
 *   countersign mcp-config --install [--client C]   add/update the entry in that client's file
 *   countersign mcp-config --install --config <path>   …in another file (a project's .mcp.json)
 *   countersign mcp-config --uninstall [--client C] remove only our entry
 */
import { homedir } from 'node:os';
import { parseArgs } from 'node:util';
import { AppError } from '../../../common/errors.ts';
import {
  MCP_CLIENTS,
  SERVER_NAME,
  installClaudeDesktopEntry,
  mcpClientConfigPath,
  mcpConfigEntry,
  removeClaudeDesktopEntry,
  type McpClient,
  type McpServerEntry,
} from './config.ts';

export interface CommandIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env?: Readonly<Record<string, string | undefined>>;
  /** The user's home directory (the clients' files are found from it). */
  home?: string;
}

const USAGE = `Usage: countersign mcp-config [--client ${MCP_CLIENTS.join('|')}] [--install | --uninstall] [--config <path>] [--bridge <path>] [--node <path>]\n`;

const AFTER: Record<McpClient, string> = {
  'claude-desktop': 'Restart Claude Desktop to pick up the change.',
  'claude-code': 'Start a new Claude Code session to pick up the change (`claude mcp list` shows it).',
  cursor: 'Restart Cursor, or turn the server on in its MCP settings, to pick up the change.',
};

/** Returns the process exit code. */
export async function runMcpConfig(
  argv: string[],
  io: CommandIo = { stdout: (t) => process.stdout.write(t), stderr: (t) => process.stderr.write(t) },
): Promise<number> {
  const env = io.env ?? process.env;
  let values: { client?: string; install?: boolean; uninstall?: boolean; config?: string; bridge?: string; node?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        client: { type: 'string' },
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
    io.stderr(USAGE);
    return 2;
  }
  if (values.help) {
    io.stdout(USAGE);
    return 0;
  }
  const client = (values.client ?? 'claude-desktop') as McpClient;
  if (!MCP_CLIENTS.includes(client)) {
    io.stderr(`countersign mcp-config: unknown client "${values.client}"; one of ${MCP_CLIENTS.join(', ')}.\n`);
    return 2;
  }
  const base = mcpConfigEntry({ bridgePath: values.bridge, nodePath: values.node, countersignHome: env.COUNTERSIGN_HOME || undefined });
  const entry: McpServerEntry = client === 'claude-code' ? { type: 'stdio', ...base } : base;
  if (!values.install && !values.uninstall) {
    io.stdout(client === 'claude-code' ? claudeMcpAdd(entry) + '\n' : JSON.stringify({ mcpServers: { [SERVER_NAME]: entry } }, null, 2) + '\n');
    return 0;
  }
  const configPath = values.config ?? mcpClientConfigPath(client, { platform: process.platform, env, home: io.home ?? homedir() });
  try {
    const result = values.uninstall ? await removeClaudeDesktopEntry(configPath) : await installClaudeDesktopEntry(configPath, entry);
    const what = values.uninstall ? 'Removed Countersign from' : 'Connected Countersign to';
    io.stdout(result.changed ? `${what} ${result.configPath}${result.backupPath ? ` (backup: ${result.backupPath})` : ''}.\n` : `${result.configPath} already up to date.\n`);
    if (result.changed) io.stdout(`${AFTER[client]}\n`);
    return 0;
  } catch (error) {
    io.stderr(`${AppError.from(error).message}\n`);
    return 1;
  }
}

/** The `claude mcp add` command line that adds the entry to Claude Code for every project of the user. */
function claudeMcpAdd(entry: McpServerEntry): string {
  const env = Object.entries(entry.env ?? {}).flatMap(([k, v]) => ['--env', shellQuote(`${k}=${v}`)]);
  return ['claude', 'mcp', 'add', '--transport', 'stdio', '--scope', 'user', SERVER_NAME, ...env, '--', ...[entry.command, ...entry.args].map(shellQuote)].join(' ');
}

/** POSIX shell quoting: bare when only safe characters, else in single quotes. */
function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}
