/**
 * The core's paths on the running host (common/paths.ts), with the Windows pipe name completed: the
 * user's SID from `whoami /user` and the per-install random part kept in `pipeNoncePath`. The core
 * refuses to start (SOCKET_UNSAFE) when the pipe name cannot be completed rather than listen on a
 * name another user could predict. On Linux and macOS this is resolvePaths as it was.
 *
 * The bridge has the same I/O in bridge/host-paths.ts: the two processes may not import each other.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname } from 'node:path';
import { AppError } from '../../../common/errors.ts';
import { resolveHostPaths, type CountersignPaths, type WindowsPipeIo } from '../../../common/paths.ts';

export interface HostPathsOptions {
  env?: Readonly<Record<string, string | undefined>>;
  platform?: string;
  home?: string;
  /** Windows I/O; tests pass their own (there is no Windows here). */
  io?: WindowsPipeIo;
}

export function hostPaths(options: HostPathsOptions = {}): CountersignPaths {
  const env = options.env ?? process.env;
  const { paths, problem } = resolveHostPaths(
    { platform: options.platform ?? process.platform, env, home: options.home ?? homedir() },
    () => options.io ?? nodeWindowsPipeIo(env),
  );
  if (problem) throw new AppError('SOCKET_UNSAFE', `Countersign will not open its pipe: it ${problem}.`);
  return paths;
}

/**
 * The Windows pipe parts read and kept with Node (works on any OS, so it is tested here on Linux).
 * `restrict` makes a file private to a SID before it becomes visible: icacls on Windows (mode 0600
 * sets no ACL there); tests pass their own.
 */
export function nodeWindowsPipeIo(
  env: Readonly<Record<string, string | undefined>>,
  restrict: (path: string, sid: string) => void = process.platform === 'win32' ? icacls(env) : () => {},
): WindowsPipeIo {
  return {
    whoamiUser: () =>
      execFileSync(whoamiPath(env), ['/user', '/fo', 'csv', '/nh'], {
        encoding: 'utf8',
        windowsHide: true,
        timeout: 10_000,
      }),
    readFile(path) {
      try {
        return readFileSync(path, 'utf8');
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
        throw error;
      }
    },
    createExclusive(path, text, ownerSid) {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
      writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
      try {
        restrict(tmp, ownerSid);
        try {
          linkSync(tmp, path);
          return true;
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === 'EEXIST') return false;
          if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw error;
        }
        // a volume without hard links: an exclusive create written in one call, then made private
        try {
          writeFileSync(path, text, { mode: 0o600, flag: 'wx' });
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
          throw error;
        }
        try {
          restrict(path, ownerSid);
        } catch (error) {
          rmSync(path, { force: true });
          throw error;
        }
        return true;
      } finally {
        rmSync(tmp, { force: true });
      }
    },
    replace(path, text, ownerSid) {
      const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
      writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
      try {
        restrict(tmp, ownerSid);
        renameSync(tmp, path);
      } finally {
        rmSync(tmp, { force: true });
      }
    },
    randomHex: (bytes) => randomBytes(bytes).toString('hex'),
  };
}

/** whoami.exe from the system directory, not whatever `whoami` comes first on PATH. */
export function whoamiPath(env: Readonly<Record<string, string | undefined>>): string {
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

function icacls(env: Readonly<Record<string, string | undefined>>): (path: string, sid: string) => void {
  const root = env.SystemRoot ?? env.SYSTEMROOT;
  const exe = root ? `${root}\\System32\\icacls.exe` : 'icacls';
  return (path, sid) =>
    void execFileSync(exe, icaclsArgs(path, sid), { stdio: 'ignore', windowsHide: true, timeout: 10_000 });
}
