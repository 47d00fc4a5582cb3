/**
 * The host-wide "one core per user" lock, held from before the core touches its socket or secret
 * until it has removed them.
 *
 * Probing the socket is not enough on its own: two cores started at the same instant (several bridges
 * that each find no app and start one) both see nothing answering, and the second one's clean-up of
 * the "stale" socket can delete the first one's. So each core first takes `core.lock` beside the
 * socket: the file is written whole under a private name and then hard-linked into place, which the
 * OS does atomically and refuses (EEXIST) when the lock exists, so exactly one core gets it and no
 * reader ever sees a half-written lock.
 *
 * A lock left by a core that died is stale: its pid is gone, or it was written before the machine last
 * booted (the lock lives in a directory that survives reboots on macOS and Windows, where after a
 * reboot its pid may well belong to some other process), or (on Linux) the pid now belongs to a
 * process that started at another time. Breaking it is serialised by a second exclusive file,
 * `core.lock.break`, under which the breaker re-reads the lock and removes it only if it is still the
 * same stale one; otherwise two cores breaking the same stale lock at once could remove each other's.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { link, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { uptime } from 'node:os';
import { join } from 'node:path';
import { AppError } from '../../../common/errors.ts';

export const LOCK_FILE = 'core.lock';
/** A break file older than this belongs to a breaker that died between two file operations. */
const BREAK_STALE_MS = 10_000;

export interface LockOwner {
  pid: number;
  /** Linux: the process's start time in clock ticks since boot (/proc/<pid>/stat field 22), against pid reuse. */
  start?: string;
  /** When the machine booted, in seconds since the epoch (now − uptime), against pid reuse after a reboot. */
  boot?: number;
  /** Random per acquisition, so a core releases only the lock it took. */
  token: string;
}

export interface CoreLock {
  readonly path: string;
  readonly owner: LockOwner;
  /** Removes the lock if it is still this core's. */
  release(): Promise<void>;
}

export interface LockProbes {
  /** Whether `owner` is a running process; injected by tests. */
  isAlive?: (owner: LockOwner) => boolean;
}

/** Takes the lock in `runDir`, or throws ALREADY_RUNNING naming the pid that holds it. */
export async function acquireCoreLock(runDir: string, probes: LockProbes = {}): Promise<CoreLock> {
  const isAlive = probes.isAlive ?? ownerIsAlive;
  const path = join(runDir, LOCK_FILE);
  const owner: LockOwner = {
    pid: process.pid,
    start: startTimeOf(process.pid),
    boot: bootTime(),
    token: randomBytes(16).toString('hex'),
  };
  const tmp = `${path}.${process.pid}.${owner.token}.tmp`;
  await writeFile(tmp, JSON.stringify(owner), { mode: 0o600, flag: 'wx' });
  try {
    for (let attempt = 0; attempt < 50; attempt++) {
      if (await createLock(tmp, path, owner, runDir)) {
        return {
          path,
          owner,
          release: () => releaseIfOurs(path, owner.token),
        };
      }
      const holder = await readOwner(path);
      if (holder === 'missing') continue;
      if (holder !== 'unreadable' && isAlive(holder)) throw alreadyRunning(holder.pid);
      if (holder === 'unreadable' && !(await olderThan(path, BREAK_STALE_MS)))
        throw alreadyRunning(undefined);
      await breakStale(path, holder === 'unreadable' ? undefined : holder.token);
    }
    throw new AppError(
      'ALREADY_RUNNING',
      'Countersign could not take its lock: other cores keep starting at the same time.',
    );
  } finally {
    await rm(tmp, { force: true });
  }
}

/** Links the written lock into place; false when a lock exists. */
async function createLock(tmp: string, path: string, owner: LockOwner, runDir: string): Promise<boolean> {
  try {
    await link(tmp, path);
    return true;
  } catch (error) {
    if (code(error) === 'EEXIST') return false;
    if (code(error) !== 'EPERM' && code(error) !== 'ENOTSUP' && code(error) !== 'ENOSYS') {
      throw new AppError('SOCKET_UNSAFE', `Countersign could not create its lock file in ${runDir}.`, {
        cause: error,
      });
    }
  }
  // a file system without hard links: an exclusive create, written in one call (a reader that comes
  // in between sees an unreadable lock, which counts as held while it is young)
  try {
    await writeFile(path, JSON.stringify(owner), { mode: 0o600, flag: 'wx' });
    return true;
  } catch (error) {
    if (code(error) === 'EEXIST') return false;
    throw new AppError('SOCKET_UNSAFE', `Countersign could not create its lock file in ${runDir}.`, {
      cause: error,
    });
  }
}

async function breakStale(path: string, staleToken: string | undefined): Promise<void> {
  const breakPath = `${path}.break`;
  try {
    await writeFile(breakPath, String(process.pid), { mode: 0o600, flag: 'wx' });
  } catch (error) {
    if (code(error) !== 'EEXIST')
      throw new AppError('SOCKET_UNSAFE', 'Countersign could not replace a stale lock file.', {
        cause: error,
      });
    // another core is breaking it: let it finish, then look again
    if (await olderThan(breakPath, BREAK_STALE_MS)) await rm(breakPath, { force: true });
    await new Promise((resolve) => setTimeout(resolve, 5 + Math.random() * 20));
    return;
  }
  try {
    const again = await readOwner(path);
    const same =
      again === 'unreadable' ? staleToken === undefined : again !== 'missing' && again.token === staleToken;
    if (same) await rm(path, { force: true });
  } finally {
    await rm(breakPath, { force: true });
  }
}

async function releaseIfOurs(path: string, token: string): Promise<void> {
  const holder = await readOwner(path);
  if (holder !== 'missing' && holder !== 'unreadable' && holder.token === token)
    await rm(path, { force: true });
}

async function readOwner(path: string): Promise<LockOwner | 'missing' | 'unreadable'> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    return code(error) === 'ENOENT' ? 'missing' : 'unreadable';
  }
  try {
    const value = JSON.parse(text) as Partial<LockOwner>;
    if (Number.isInteger(value.pid) && (value.pid as number) > 0 && typeof value.token === 'string') {
      return {
        pid: value.pid as number,
        token: value.token,
        ...(typeof value.start === 'string' ? { start: value.start } : {}),
        ...(typeof value.boot === 'number' && Number.isFinite(value.boot) ? { boot: value.boot } : {}),
      };
    }
  } catch {
    // unreadable below
  }
  return 'unreadable';
}

/** Whether the lock's owner still runs: written since the last boot, the pid exists and, where the OS tells, started when the lock says. */
function ownerIsAlive(owner: LockOwner): boolean {
  if (owner.boot !== undefined && Math.abs(owner.boot - bootTime()) > BOOT_SLACK_S) return false;
  try {
    process.kill(owner.pid, 0);
  } catch (error) {
    if (code(error) !== 'EPERM') return false;
  }
  if (owner.start === undefined) return true;
  const now = startTimeOf(owner.pid);
  return now === undefined || now === owner.start;
}

/**
 * Boot time from the wall clock and the uptime. Two readings in one boot differ only by clock
 * adjustments (NTP), hence the slack; a reboot moves it by at least the length of the last session.
 */
export function bootTime(): number {
  return Math.round(Date.now() / 1000 - uptime());
}
const BOOT_SLACK_S = 120;

/** Linux: field 22 of /proc/<pid>/stat (start time since boot). The command name (field 2) may hold spaces and parentheses. */
export function startTimeOf(pid: number): string | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    return parseProcStatStart(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

export function parseProcStatStart(stat: string): string | undefined {
  const close = stat.lastIndexOf(')');
  if (close === -1) return undefined;
  const fields = stat.slice(close + 2).split(' ');
  const start = fields[19];
  return start !== undefined && /^\d+$/.test(start) ? start : undefined;
}

async function olderThan(path: string, ms: number): Promise<boolean> {
  try {
    return Date.now() - (await stat(path)).mtimeMs > ms;
  } catch {
    return false;
  }
}

function alreadyRunning(pid: number | undefined): AppError {
  return new AppError(
    'ALREADY_RUNNING',
    `Countersign is already running for this user${pid !== undefined ? ` (process ${pid})` : ''}: only one core may own the session.`,
  );
}

function code(error: unknown): string | undefined {
  return (error as NodeJS.ErrnoException | undefined)?.code;
}
