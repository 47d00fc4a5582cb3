/**
 * Countersign's data directory holds the audit chain, the calls in flight, the configuration and the
 * upstream listings: nobody but its owner may read or write there. The core refuses to start on a
 * directory that is not its own or that its group or others can reach (the reason says which and how
 * to fix it), and every file it creates there is owner-only from its first byte (0600, directories
 * 0700). On Windows the mode bits do not describe access (ACLs do): the checks are POSIX only.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { AppError } from '../../common/errors.ts';

export interface DataDirOptions {
  platform?: string;
  /** The user the directory must belong to; `process.getuid()` by default. */
  uid?: number;
}

/** Creates the data directory owner-only when it is missing, and refuses one that is not private. */
export function ensurePrivateDataDir(dir: string, options: DataDirOptions = {}): void {
  const platform = options.platform ?? process.platform;
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new AppError('DATA_DIR_UNSAFE', `Countersign cannot create its data directory ${dir}.`, { cause: error });
  }
  if (platform === 'win32') return;
  const st = statSync(dir);
  if (!st.isDirectory()) throw new AppError('DATA_DIR_UNSAFE', `Countersign's data directory ${dir} is not a directory.`);
  const uid = options.uid ?? process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new AppError(
      'DATA_DIR_UNSAFE',
      `Countersign will not use ${dir}: it belongs to another user (uid ${st.uid}, you are ${uid}), who could read its audit records and replace its files. Use a directory of your own.`,
    );
  }
  const open = st.mode & 0o077;
  if (open !== 0) {
    throw new AppError(
      'DATA_DIR_UNSAFE',
      `Countersign will not use ${dir}: its group or other users can ${open & 0o022 ? 'write' : 'read'} it (mode ${(st.mode & 0o777).toString(8)}). Run chmod 700 on it.`,
    );
  }
}

/**
 * Makes `path` an owner-only file before anything writes it: created empty with mode 0600 when missing,
 * tightened to 0600 when it exists. SQLite gives its -wal and -shm files the mode of the database file,
 * so a database opened on such a file keeps all three private.
 */
function privateFile(path: string, platform = process.platform): void {
  closeSync(openSync(path, 'a', 0o600));
  if (platform !== 'win32') chmodSync(path, 0o600);
}

/** A SQLite database file made owner-only before it is opened, with the -wal and -shm files a run left. */
export function privateDatabase(path: string, platform = process.platform): void {
  privateFile(path, platform);
  if (platform === 'win32') return;
  for (const side of [`${path}-wal`, `${path}-shm`, `${path}-journal`]) if (existsSync(side)) chmodSync(side, 0o600);
}
