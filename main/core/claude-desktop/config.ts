/**
 * Connects Claude Desktop to Countersign by writing our one entry into claude_desktop_config.json:
 * parse, add or update only `mcpServers.countersign`, keep every other server and setting, back the old
 * file up, and write atomically (temp file + rename in the same directory). A file that is not valid
 * JSON is refused and left untouched: it is the user's, and guessing at it could lose their settings.
 */
import { randomBytes } from 'node:crypto';
import { copyFile, open, readFile, rename, rm, stat, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AppError } from '../../../common/errors.ts';

export const SERVER_NAME = 'countersign';

/** An `mcpServers` entry as Claude Desktop, Claude Code and Cursor read it. */
export interface McpServerEntry {
  /** Claude Code writes `"type": "stdio"` for a local server (`claude mcp add`); the others leave it out. */
  type?: 'stdio';
  command: string;
  args: string[];
  env?: Record<string, string>;
}

/** The MCP clients whose configuration `countersign mcp-config` writes. */
export const MCP_CLIENTS = ['claude-desktop', 'claude-code', 'cursor'] as const;
export type McpClient = (typeof MCP_CLIENTS)[number];

/**
 * The file each client reads its servers from, for every project of the user: Claude Desktop's
 * claude_desktop_config.json; Claude Code's user scope, the top-level `mcpServers` of ~/.claude.json
 * (what `claude mcp add --scope user` writes; a project's `.mcp.json` has the same shape); Cursor's
 * global ~/.cursor/mcp.json (a project's `.cursor/mcp.json` has the same shape).
 */
export function mcpClientConfigPath(client: McpClient, input: { platform: string; env: Readonly<Record<string, string | undefined>>; home: string }): string {
  if (client === 'claude-code') return join(input.home, '.claude.json');
  if (client === 'cursor') return join(input.home, '.cursor', 'mcp.json');
  return claudeDesktopConfigPath(input);
}

/** Where Claude Desktop reads its configuration on each OS. */
export function claudeDesktopConfigPath(input: { platform: string; env: Readonly<Record<string, string | undefined>>; home: string }): string {
  const { platform, env, home } = input;
  if (platform === 'darwin') return join(home, 'Library', 'Application Support', 'Claude', 'claude_desktop_config.json');
  if (platform === 'win32') return join(env.APPDATA || join(home, 'AppData', 'Roaming'), 'Claude', 'claude_desktop_config.json');
  return join(env.XDG_CONFIG_HOME || join(home, '.config'), 'Claude', 'claude_desktop_config.json');
}

/**
 * The bundled bridge (dist/bridge.mjs, built by `npm run build:bridge`), found from this module
 * (`moduleUrl`) whether it runs from main/core/claude-desktop/ or bundled into dist/core/. In the
 * packaged desktop app the core runs from inside app.asar, which a plain `node` cannot read: there the
 * bridge is the copy electron-builder ships beside it, `<resources>/bridge/bridge.mjs`
 * (electron-builder.yml's extraResources), `resourcesPath` being Electron's `process.resourcesPath`.
 */
export function bridgePathFor(moduleUrl: string, resourcesPath: string | undefined): string {
  const here = new URL('.', moduleUrl);
  if (resourcesPath && /\.asar\//.test(here.pathname)) return join(resourcesPath, 'bridge', 'bridge.mjs');
  return fileURLToPath(new URL(here.pathname.endsWith('/dist/core/') ? '../bridge.mjs' : '../../../dist/bridge.mjs', here));
}

function defaultBridgePath(): string {
  return bridgePathFor(import.meta.url, (process as { resourcesPath?: string }).resourcesPath);
}

export interface EntryOptions {
  /** Absolute path of dist/bridge.mjs. */
  bridgePath?: string;
  /**
   * The Node binary that runs the bridge. Defaults to the one running now, by absolute path: Claude
   * Desktop started from the Dock or Start menu does not see a shell's PATH. Inside the desktop app
   * the app's own binary is never borrowed (its RunAsNode fuse is off): the caller passes a Node the
   * user has, or installs the .mcpb bundle, which runs on Claude Desktop's own Node.
   */
  nodePath?: string;
  /** COUNTERSIGN_HOME to pass to the bridge when the app runs with one. */
  countersignHome?: string;
}

export function mcpConfigEntry(options: EntryOptions = {}): McpServerEntry {
  const bridgePath = options.bridgePath ?? defaultBridgePath();
  const env: Record<string, string> = {};
  if (options.countersignHome) env.COUNTERSIGN_HOME = options.countersignHome;
  if (!options.nodePath && process.versions.electron) {
    throw new AppError(
      'CONFIG_MISSING',
      'No Node.js was found for the bridge. Install the Countersign bundle (countersign.mcpb) in Claude Desktop, or install Node.js and try again.',
    );
  }
  const entry: McpServerEntry = { command: options.nodePath ?? process.execPath, args: [bridgePath] };
  if (Object.keys(env).length > 0) entry.env = env;
  return entry;
}

export interface InstallResult {
  configPath: string;
  /** The previous file, copied before the write (absent when there was none or nothing changed). */
  backupPath?: string;
  changed: boolean;
}

/**
 * Adds or updates `mcpServers.countersign` in the file at `configPath`, keeping everything else. Any
 * client's file whose servers sit under a top-level `mcpServers` (all of MCP_CLIENTS) takes it.
 */
export async function installClaudeDesktopEntry(configPath: string, entry: McpServerEntry): Promise<InstallResult> {
  const { config, existed, mode } = await readConfig(configPath);
  const servers = config.mcpServers;
  if (servers !== undefined && (typeof servers !== 'object' || servers === null || Array.isArray(servers))) {
    throw new AppError('CONFIG_INVALID', `${configPath} has an "mcpServers" that is not an object; Countersign left the file unchanged.`);
  }
  const current = (servers as Record<string, unknown> | undefined)?.[SERVER_NAME];
  if (JSON.stringify(current) === JSON.stringify(entry)) return { configPath, changed: false };
  const next = { ...config, mcpServers: { ...(servers as Record<string, unknown> | undefined), [SERVER_NAME]: entry } };
  let backupPath: string | undefined;
  if (existed) {
    backupPath = `${configPath}.countersign-backup-${timestamp()}`;
    await copyFile(configPath, backupPath);
  }
  await writeAtomic(configPath, JSON.stringify(next, null, 2) + '\n', mode);
  return { configPath, backupPath, changed: true };
}

/** Removes our entry (and only ours); a missing file or entry is not an error. */
export async function removeClaudeDesktopEntry(configPath: string): Promise<InstallResult> {
  const { config, existed, mode } = await readConfig(configPath);
  const servers = config.mcpServers as Record<string, unknown> | undefined;
  if (!existed || !servers || typeof servers !== 'object' || !(SERVER_NAME in servers)) return { configPath, changed: false };
  const { [SERVER_NAME]: _removed, ...rest } = servers;
  const backupPath = `${configPath}.countersign-backup-${timestamp()}`;
  await copyFile(configPath, backupPath);
  await writeAtomic(configPath, JSON.stringify({ ...config, mcpServers: rest }, null, 2) + '\n', mode);
  return { configPath, backupPath, changed: true };
}

async function readConfig(configPath: string): Promise<{ config: Record<string, unknown>; existed: boolean; mode: number }> {
  let text: string;
  let mode = 0o600;
  try {
    text = await readFile(configPath, 'utf8');
    mode = (await stat(configPath)).mode & 0o777;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { config: {}, existed: false, mode };
    throw new AppError('CONFIG_INVALID', `Countersign could not read ${configPath}.`, { cause: error });
  }
  if (text.trim() === '') return { config: {}, existed: true, mode };
  let value: unknown;
  try {
    value = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (error) {
    throw new AppError(
      'CONFIG_INVALID',
      `${configPath} is not valid JSON, so Countersign left it unchanged. Fix the file (or move it away) and connect again.`,
      { cause: error },
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new AppError('CONFIG_INVALID', `${configPath} does not hold a JSON object, so Countersign left it unchanged.`);
  }
  return { config: value as Record<string, unknown>, existed: true, mode };
}

async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${randomBytes(6).toString('hex')}.countersign.tmp`);
  try {
    const handle = await open(tmp, 'wx', mode);
    try {
      await handle.writeFile(text, 'utf8');
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw new AppError('CONFIG_INVALID', `Countersign could not write ${path}.`, { cause: error });
  }
}

function timestamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-');
}

/** A Node.js on the user's PATH (for the desktop app, which never lends its own binary), or undefined. */
export async function findNodeOnPath(env: Readonly<Record<string, string | undefined>> = process.env): Promise<string | undefined> {
  const { access } = await import('node:fs/promises');
  const { constants } = await import('node:fs');
  const { execFile } = await import('node:child_process');
  const names = process.platform === 'win32' ? ['node.exe'] : ['node'];
  // What the bridge needs of its Node (bridge/node-check.ts: Node 20.16, or 22.3 on), asked of the
  // binary itself: an older one first on PATH (nvm's 18, 22.0) would write an entry that cannot start.
  const canRunBridge = (node: string): Promise<boolean> =>
    new Promise((resolve) =>
      execFile(node, ['-e', "process.exit(typeof process.getBuiltinModule === 'function' ? 0 : 3)"], { timeout: 10_000, env: {} }, (error) => resolve(!error)),
    );
  for (const dir of (env.PATH ?? '').split(process.platform === 'win32' ? ';' : ':').filter(Boolean)) {
    for (const name of names) {
      const candidate = join(dir, name);
      try {
        await access(candidate, constants.X_OK);
      } catch {
        continue; // not here
      }
      if (await canRunBridge(candidate)) return candidate;
    }
  }
  return undefined;
}
