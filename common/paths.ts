/**
 * Where Countersign keeps its state, its socket and its logs on each OS. Pure: the core, the bridge and
 * the tests all call it with their own `platform`, `env` and `home`, so the bridge finds the socket the
 * core listens on without either importing the other. `COUNTERSIGN_HOME` overrides everything (tests
 * and portable installs use it).
 *
 * On Windows the socket is a named pipe, and pipe names share one machine-wide namespace, so the name
 * carries the user's SID and a per-install random part (windowsPipeParts below): another user cannot
 * claim the name first, and cannot guess it. The core and the bridge each read both with host I/O
 * passed in (common/node/host-paths.ts), since this file imports no Node.
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
  const join = (...parts: string[]): string =>
    parts.map((p, i) => (i === 0 ? trimEnd(p, sep) : trimBoth(p, sep))).join(sep);

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

/** Bytes of the per-install random part of the Windows pipe name (hex in the pipe name and the file). */
const PIPE_NONCE_BYTES = 16;
const PIPE_NONCE = /^[0-9a-f]{32}$/;
/** A Windows security identifier as `whoami` prints it: S-1-<revision authority>-<subauthorities>. */
const SID = /^S-1-\d+(?:-\d+){1,15}$/;

export function isPipeNonce(value: string): boolean {
  return PIPE_NONCE.test(value);
}

/**
 * The user's SID from the output of `whoami /user /fo csv /nh`: one CSV line, `"DOMAIN\user","S-1-…"`.
 * The account name is quoted and may itself hold commas or doubled quotes; the SID is the last field.
 * Anything else (a localised table, an error, two lines of accounts) gives undefined, never a guess.
 */
export function parseWhoamiSid(output: string): string | undefined {
  const lines = output.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length !== 1) return undefined;
  const fields = parseCsvLine(lines[0]!.trim());
  if (!fields || fields.length !== 2) return undefined;
  const sid = fields[1]!;
  return SID.test(sid) ? sid : undefined;
}

function parseCsvLine(line: string): string[] | undefined {
  const fields: string[] = [];
  let at = 0;
  while (at <= line.length) {
    if (line[at] !== '"') return undefined;
    let value = '';
    at++;
    for (;;) {
      if (at >= line.length) return undefined;
      if (line[at] === '"') {
        if (line[at + 1] === '"') {
          value += '"';
          at += 2;
          continue;
        }
        at++;
        break;
      }
      value += line[at];
      at++;
    }
    fields.push(value);
    if (at === line.length) return fields;
    if (line[at] !== ',') return undefined;
    at++;
  }
  return undefined;
}

/** What windowsPipeParts needs from the host; Node implementations live beside the core and the bridge. */
export interface WindowsPipeIo {
  /** stdout of `whoami /user /fo csv /nh`; throws when it cannot run. */
  whoamiUser(): string;
  /** The file's text, or undefined when it does not exist. */
  readFile(path: string): string | undefined;
  /**
   * Creates the file with `text`, atomically (never seen half-written) and readable by `ownerSid`
   * only from the moment it appears; false when it already exists.
   */
  createExclusive(path: string, text: string, ownerSid: string): boolean;
  /** Replaces the file's content with `text`, likewise owner-only (for a file that exists but is damaged). */
  replace(path: string, text: string, ownerSid: string): void;
  /** `bytes` random bytes from the OS's CSPRNG, as lowercase hex. */
  randomHex(bytes: number): string;
}

export type WindowsPipeParts = { ok: true; sid: string; pipeNonce: string } | { ok: false; reason: string };

/**
 * The SID and the per-install random part for the Windows pipe name. The random part is created on
 * first use by whichever of the core and the bridge comes first (an exclusive create, so both end up
 * with the same value), and kept in `pipeNoncePath`. A damaged file is replaced, which changes the
 * pipe name: a core running with the old one is found again after it restarts.
 */
export function windowsPipeParts(pipeNoncePath: string, io: WindowsPipeIo): WindowsPipeParts {
  let sid: string | undefined;
  try {
    sid = parseWhoamiSid(io.whoamiUser());
  } catch {
    sid = undefined;
  }
  if (!sid) {
    return {
      ok: false,
      reason: 'could not read your Windows account SID (whoami /user), which the pipe name carries',
    };
  }
  try {
    for (let attempt = 0; attempt < 2; attempt++) {
      const existing = io.readFile(pipeNoncePath)?.trim();
      if (existing !== undefined && isPipeNonce(existing)) return { ok: true, sid, pipeNonce: existing };
      const fresh = io.randomHex(PIPE_NONCE_BYTES);
      if (existing !== undefined) {
        io.replace(pipeNoncePath, fresh, sid);
        return { ok: true, sid, pipeNonce: fresh };
      }
      if (io.createExclusive(pipeNoncePath, fresh, sid)) return { ok: true, sid, pipeNonce: fresh };
      // another process created it between our read and our create: read theirs
    }
  } catch {
    // reported below
  }
  return { ok: false, reason: `could not read, or create private to you, ${pipeNoncePath}` };
}

/**
 * resolvePaths for the running host: on Windows it first reads the SID and the pipe's random part
 * with the I/O `io` makes (called only on Windows). `problem` says why the pipe name could not be completed (the core refuses to start then; the
 * bridge reports it and finds no core).
 */
export function resolveHostPaths(
  input: PathsInput,
  io: () => WindowsPipeIo,
): { paths: CountersignPaths; problem?: string } {
  const base = resolvePaths(input);
  if (input.platform !== 'win32') return { paths: base };
  const parts = windowsPipeParts(base.pipeNoncePath, io());
  if (!parts.ok) return { paths: base, problem: parts.reason };
  return { paths: resolvePaths({ ...input, sid: parts.sid, pipeNonce: parts.pipeNonce }) };
}
