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
  const home = options.home ?? process.getBuiltinModule('node:os').homedir();
  return resolveHostPaths({ platform, env, home }, () => options.io ?? bridgeWindowsPipeIo(env));
}

export function bridgeWindowsPipeIo(env: Readonly<Record<string, string | undefined>>): WindowsPipeIo {
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
    createExclusive(path, text) {
      fs.mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      const tmp = tmpName(path);
      fs.writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
      try {
        fs.linkSync(tmp, path);
        return true;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') return false;
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw error;
        try {
          fs.writeFileSync(path, text, { mode: 0o600, flag: 'wx' });
          return true;
        } catch (inner) {
          if ((inner as NodeJS.ErrnoException).code === 'EEXIST') return false;
          throw inner;
        }
      } finally {
        fs.rmSync(tmp, { force: true });
      }
    },
    replace(path, text) {
      const tmp = tmpName(path);
      fs.writeFileSync(tmp, text, { mode: 0o600, flag: 'wx' });
      fs.renameSync(tmp, path);
    },
    randomHex,
  };
}
