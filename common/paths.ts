/**
 * Where Countersign keeps its state, its socket and its logs on each OS. Pure: the core, the bridge and
 * the tests all call it with their own `platform`, `env` and `home`, so the bridge finds the socket the
 * core listens on without either importing the other. `COUNTERSIGN_HOME` overrides everything (tests
 * and portable installs use it).
 */
export interface PathsInput {
  platform: string;
  env: Readonly<Record<string, string | undefined>>;
  home: string;
  /** Windows only: the user's SID, which the pipe name carries (pipes live in a global namespace). */
  sid?: string;
  /** Windows only: the per-install random part of the pipe name (kept in `pipeNoncePath`). */
  pipeNonce?: string;
}

export interface CountersignPaths {
  /** Long-lived state: audit store, settings. */
  dataDir: string;
  /** Owner-only directory holding the socket and the per-start secret. */
  runDir: string;
  /** Unix socket path, or a Windows named pipe `\\.\pipe\countersign-<SID>-<random>`. */
  socketPath: string;
  /** The per-start handshake secret (mode 0600). Never travels over the socket. */
  secretPath: string;
  logDir: string;
  /** Windows only: where the per-install random part of the pipe name is kept. */
  pipeNoncePath: string;
}

export function resolvePaths(input: PathsInput): CountersignPaths {
  const { platform, env, home } = input;
  const win = platform === 'win32';
  const sep = win ? '\\' : '/';
  const join = (...parts: string[]): string => parts.map((p, i) => (i === 0 ? trimEnd(p, sep) : trimBoth(p, sep))).join(sep);

  const override = nonEmpty(env.COUNTERSIGN_HOME);
  let dataDir: string;
  let runDir: string;
  let logDir: string;
  if (override) {
    dataDir = trimEnd(override, sep);
    runDir = join(dataDir, 'run');
    logDir = join(dataDir, 'logs');
  } else if (platform === 'darwin') {
    dataDir = join(home, 'Library', 'Application Support', 'Countersign');
    runDir = join(dataDir, 'run');
    logDir = join(home, 'Library', 'Logs', 'Countersign');
  } else if (win) {
    const local = nonEmpty(env.LOCALAPPDATA) ?? join(home, 'AppData', 'Local');
    dataDir = join(local, 'Countersign');
    runDir = join(dataDir, 'run');
    logDir = join(dataDir, 'logs');
  } else {
    const state = nonEmpty(env.XDG_STATE_HOME) ?? join(home, '.local', 'state');
    dataDir = join(state, 'countersign');
    const runtime = nonEmpty(env.XDG_RUNTIME_DIR);
    runDir = runtime ? join(runtime, 'countersign') : join(dataDir, 'run');
    logDir = join(dataDir, 'logs');
  }

  const socketPath = win
    ? `\\\\.\\pipe\\countersign-${safePipePart(input.sid ?? env.USERNAME ?? 'user')}-${safePipePart(input.pipeNonce ?? '')}`
    : join(runDir, 'core.sock');
  return {
    dataDir,
    runDir,
    socketPath,
    secretPath: join(runDir, 'core.secret'),
    logDir,
    pipeNoncePath: join(dataDir, 'pipe-nonce'),
  };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value !== undefined && value !== '' ? value : undefined;
}

function trimEnd(value: string, sep: string): string {
  let end = value.length;
  while (end > 1 && (value[end - 1] === sep || value[end - 1] === '/')) end--;
  return value.slice(0, end);
}

function trimBoth(value: string, sep: string): string {
  let start = 0;
  while (start < value.length && (value[start] === sep || value[start] === '/')) start++;
  return trimEnd(value.slice(start), sep);
}

function safePipePart(value: string): string {
  return value.replace(/[^A-Za-z0-9-]/g, '_');
}
