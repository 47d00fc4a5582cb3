/**
 * The core's paths on the running host (common/node/host-paths.ts). The core refuses to start
 * (SOCKET_UNSAFE) when the Windows pipe name cannot be completed rather than listen on a name another
 * user could predict.
 */
import { AppError } from '../../../common/errors.ts';
import { resolveNodeHostPaths, type HostPathsOptions } from '../../../common/node/host-paths.ts';
import type { CountersignPaths } from '../../../common/paths.ts';

export function hostPaths(options: HostPathsOptions = {}): CountersignPaths {
  const { paths, problem } = resolveNodeHostPaths(options);
  if (problem) throw new AppError('SOCKET_UNSAFE', `Countersign will not open its pipe: it ${problem}.`);
  return paths;
}
