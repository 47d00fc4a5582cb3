/**
 * The paths on the running host (common/paths.ts) for the bridge and the core alike, with the Windows
 * pipe name completed: the user's SID from `whoami /user` and the per-install random part kept in
 * `pipeNoncePath`, created by whichever of them runs first. On Linux and macOS this is resolvePaths.
 *
 * Built-ins come through process.getBuiltinModule, only when used: this file is bundled into the
 * bridge, whose start Claude Desktop waits for (see bridge/relay.ts).
 */
import { resolveHostPaths, type CountersignPaths, type WindowsPipeIo } from '../paths.ts';
import { randomHex } from './random.ts';

type Env = Readonly<Record<string, string | undefined>>;

export interface HostPathsOptions {
  env?: Env;
  platform?: string;
  home?: string;
  /** Windows I/O; tests pass their own (there is no Windows here). */
  io?: WindowsPipeIo;
}

/** The paths, or with `problem` saying why the Windows pipe name could not be completed. */
export function resolveNodeHostPaths(options: HostPathsOptions = {}): { paths: CountersignPaths; problem?: string } {
  const env = options.env ?? process.env;
  const platform = options.platform ?? process.platform;
  // what os.homedir() reads first, without loading node:os on the way to the bridge's first answer
  const home =
    options.home ??
    nonEmpty(platform === 'win32' ? env.USERPROFILE : env.HOME) ??
    process.getBuiltinModule('node:os').homedir();
  return resolveHostPaths({ platform, env, home }, () => options.io ?? nodeWindowsPipeIo(env));
}

/**
 * The Windows pipe parts read and kept with Node (works on any OS, so it is tested here on Linux).
 * `restrict` makes a file private to a SID before it becomes visible: icacls on Windows (mode 0600
 * sets no ACL there); tests pass their own.
 */
export function nodeWindowsPipeIo(
  env: Env,
  restrict: (path: string, sid: string) => void = process.platform === 'win32' ? icacls(env) : () => {},
): WindowsPipeIo {
  const fs = process.getBuiltinModule('node:fs');
  const { dirname } = process.getBuiltinModule('node:path');
  const tmpName = (path: string): string => `${path}.${process.pid}.${randomHex(6)}.tmp`;
  return {
    whoamiUser: () =>
      process.getBuiltinModule('node:child_process').execFileSync(whoamiPath(env), ['/user', '/fo', 'csv', '/nh'], {
        encoding: 'utf8',
        windowsHide: true,
        timeout: 10_000,
      }),
    readFile(path) {
      try {
        return fs.readFileSync(path, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw error;
      }
    },
    createExclusive(path, text, ownerSid) {
      fs.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      const tmp = tmpName(path);
      fs.writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
      try {
        restrict(tmp, ownerSid);
        try {
          fs.linkSync(tmp, path);
          return true;
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === 'EEXIST') return false;
          if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw error;
        }
        // a volume without hard links: an exclusive create written in one call, then made private
        try {
          fs.writeFileSync(path, text, { mode: 0o600, flag: 'wx' });
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
          throw error;
        }
        try {
          restrict(path, ownerSid);
        } catch (error) {
          fs.rmSync(path, { force: true });
          throw error;
        }
        return true;
      } finally {
        fs.rmSync(tmp, { force: true });
      }
    },
    replace(path, text, ownerSid) {
      const tmp = tmpName(path);
      fs.writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
      try {
        restrict(tmp, ownerSid);
        fs.renameSync(tmp, path);
      } finally {
        fs.rmSync(tmp, { force: true });
      }
    },
    randomHex,
  };
}

/** whoami.exe from the system directory, not whatever `whoami` comes first on PATH. */
export function whoamiPath(env: Env): string {
  const root = env.SystemRoot ?? env.SYSTEMROOT;
  return root ? `${root}\\System32\\whoami.exe` : 'whoami';
}

/**
 * icacls arguments that leave `path` readable by `sid` alone: inherited entries removed, one explicit
 * full-control entry for the SID (`*S-1-…` names a SID rather than an account name).
 */
export function icaclsArgs(path: string, sid: string): string[] {
  return [path, '/inheritance:r', '/grant:r', `*${sid}:F`];
}

function icacls(env: Env): (path: string, sid: string) => void {
  const root = env.SystemRoot ?? env.SYSTEMROOT;
  const exe = root ? `${root}\\System32\\icacls.exe` : 'icacls';
  return (path, sid) =>
    void process
      .getBuiltinModule('node:child_process')
      .execFileSync(exe, icaclsArgs(path, sid), { stdio: 'ignore', windowsHide: true, timeout: 10_000 });
}

function nonEmpty(value: string | undefined): string | undefined {
  return value !== undefined && value !== '' ? value : undefined;
}
