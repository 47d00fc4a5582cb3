/**
 * The bridge's paths on the running host (common/paths.ts), with the Windows pipe name completed the
 * same way as the core's (main/core/mcp/host-paths.ts, which the bridge may not import): the SID from
 * `whoami /user`, the per-install random part from `pipeNoncePath`, created here when the bridge runs
 * before the app ever has. Built-ins through process.getBuiltinModule, as in relay.ts.
 */
import { resolveHostPaths, type CountersignPaths, type WindowsPipeIo } from '../common/paths.ts';
import { randomHex } from './hmac-sha256.ts';

export function bridgePaths(
  env: Readonly<Record<string, string | undefined>>,
  options: { platform?: string; home?: string; io?: WindowsPipeIo } = {},
): { paths: CountersignPaths; problem?: string } {
  const platform = options.platform ?? process.platform;
  // what os.homedir() reads first, without loading node:os on the way to the first answer
  const home =
    options.home ??
    nonEmpty(platform === 'win32' ? env.USERPROFILE : env.HOME) ??
    process.getBuiltinModule('node:os').homedir();
  return resolveHostPaths({ platform, env, home }, () => options.io ?? bridgeWindowsPipeIo(env));
}

/** As nodeWindowsPipeIo in main/core/mcp/host-paths.ts: `restrict` is icacls on Windows, tests pass their own. */
export function bridgeWindowsPipeIo(
  env: Readonly<Record<string, string | undefined>>,
  restrict: (path: string, sid: string) => void = process.platform === 'win32' ? icacls(env) : () => {},
): WindowsPipeIo {
  const fs = process.getBuiltinModule('node:fs');
  const { dirname } = process.getBuiltinModule('node:path');
  const tmpName = (path: string): string => `${path}.${process.pid}.${randomHex(6)}.tmp`;
  return {
    whoamiUser() {
      const root = env.SystemRoot ?? env.SYSTEMROOT;
      const whoami = root ? `${root}\\System32\\whoami.exe` : 'whoami';
      return process
        .getBuiltinModule('node:child_process')
        .execFileSync(whoami, ['/user', '/fo', 'csv', '/nh'], {
          encoding: 'utf8',
          windowsHide: true,
          timeout: 10_000,
        });
    },
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

function icacls(env: Readonly<Record<string, string | undefined>>): (path: string, sid: string) => void {
  const root = env.SystemRoot ?? env.SYSTEMROOT;
  const exe = root ? `${root}\\System32\\icacls.exe` : 'icacls';
  return (path, sid) =>
    void process
      .getBuiltinModule('node:child_process')
      .execFileSync(exe, [path, '/inheritance:r', '/grant:r', `*${sid}:F`], {
        stdio: 'ignore',
        windowsHide: true,
        timeout: 10_000,
      });
}

function nonEmpty(value: string | undefined): string | undefined {
  return value !== undefined && value !== '' ? value : undefined;
}
