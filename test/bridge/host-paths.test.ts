/**
 * The Windows pipe name's parts (SID from `whoami /user`, per-install random part in pipeNoncePath)
 * and their wiring into the core's and the bridge's paths. There is no Windows here: `whoami` is
 * stood in for with what Windows prints, and the platform is passed as 'win32'; the file handling is
 * the real one, on this machine's file system.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { AppError } from '../../common/errors.ts';
import { icaclsArgs, nodeWindowsPipeIo, resolveNodeHostPaths, whoamiPath } from '../../common/node/host-paths.ts';
import { isPipeNonce, parseWhoamiSid, resolvePaths, windowsPipeParts, type WindowsPipeIo } from '../../common/paths.ts';
import { hostPaths } from '../../main/core/mcp/host-paths.ts';
import { ROOT } from './helpers.ts';

const SID = 'S-1-5-21-1004336348-1177238915-682003330-1001';
const WHOAMI = `"desktop-7k2\\alice","${SID}"\r\n`;
const HOME = 'C:\\Users\\alice';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'cs-pipe-'));
  dirs.push(d);
  return d;
}

/** An env whose LOCALAPPDATA is inside a fresh temp dir (Windows separators then append inside it). */
function windowsEnv(): { env: Record<string, string>; dir: string } {
  const dir = tempDir();
  return { env: { LOCALAPPDATA: join(dir, 'local'), USERNAME: 'alice' }, dir };
}

/** In-memory I/O, to drive windowsPipeParts through each branch. */
function memoryIo(files: Map<string, string>, whoami: () => string = () => WHOAMI): WindowsPipeIo & { created: number; owners: string[] } {
  let n = 0;
  const io = {
    created: 0,
    owners: [] as string[],
    whoamiUser: whoami,
    readFile: (p: string) => files.get(p),
    createExclusive(p: string, text: string, ownerSid: string) {
      if (files.has(p)) return false;
      files.set(p, text);
      io.created += 1;
      io.owners.push(ownerSid);
      return true;
    },
    replace: (p: string, text: string) => void files.set(p, text),
    randomHex: (bytes: number) => (++n).toString(16).padStart(bytes * 2, '0'),
  };
  return io;
}

describe('reading the SID from whoami', () => {
  it('reads the SID from `whoami /user /fo csv /nh`', () => {
    expect(parseWhoamiSid(WHOAMI)).toBe(SID);
    expect(parseWhoamiSid(`"NT AUTHORITY\\SYSTEM","S-1-5-18"\n`)).toBe('S-1-5-18');
  });

  it('reads it whatever the account name holds, commas and quotes included', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }).filter((s) => !/[\r\n]/.test(s)), (name) => {
        expect(parseWhoamiSid(`"${name.replaceAll('"', '""')}","${SID}"\r\n`)).toBe(SID);
      }),
    );
  });

  it('gives nothing rather than a guess for output it does not expect', () => {
    const table = `\r\nUSER INFORMATION\r\n----------------\r\n\r\nUser Name          SID\r\n================== ===\r\ndesktop-7k2\\alice ${SID}\r\n`;
    for (const output of [
      '',
      table,
      'ERROR: Access is denied.\r\n',
      `"desktop-7k2\\alice","not-a-sid"`,
      `"desktop-7k2\\alice","${SID}","extra"`,
      `"${SID}"`,
      `"a","${SID}"\r\n"b","${SID}"\r\n`,
      `"unterminated,"${SID}"`,
      `desktop-7k2\\alice,${SID}`,
    ]) {
      expect(parseWhoamiSid(output), output).toBeUndefined();
    }
  });

  it('runs whoami.exe from the system directory rather than the first one on PATH', () => {
    expect(whoamiPath({ SystemRoot: 'C:\\Windows' })).toBe('C:\\Windows\\System32\\whoami.exe');
  });
});

describe('the per-install random part', () => {
  it('is created once, then read back unchanged', () => {
    const files = new Map<string, string>();
    const io = memoryIo(files);
    const first = windowsPipeParts('n', io);
    const second = windowsPipeParts('n', io);
    expect(first).toEqual({ ok: true, sid: SID, pipeNonce: expect.stringMatching(/^[0-9a-f]{32}$/) });
    expect(second).toEqual(first);
    expect(io.created).toBe(1);
    expect(io.owners).toEqual([SID]);
  });

  it("takes the other process's value when it created the file first", () => {
    const files = new Map<string, string>();
    const io = memoryIo(files);
    const theirs = 'ab'.repeat(16);
    // another process creates the file between our read and our create
    const racing: WindowsPipeIo = { ...io, createExclusive: (p) => (files.set(p, theirs), false) };
    expect(windowsPipeParts('n', racing)).toMatchObject({ ok: true, pipeNonce: theirs });
  });

  it('replaces a damaged file instead of using what it holds', () => {
    const files = new Map([['n', 'not hex at all']]);
    const result = windowsPipeParts('n', memoryIo(files));
    expect(result).toMatchObject({ ok: true });
    expect(isPipeNonce(files.get('n')!)).toBe(true);
  });

  it('fails, saying why, when whoami cannot run or prints something else', () => {
    const files = new Map<string, string>();
    const failing = memoryIo(files, () => {
      throw new Error('spawn whoami ENOENT');
    });
    expect(windowsPipeParts('n', failing)).toEqual({ ok: false, reason: expect.stringMatching(/SID \(whoami \/user\)/) });
    expect(windowsPipeParts('n', memoryIo(files, () => 'ERROR: something'))).toMatchObject({ ok: false });
    expect(files.size).toBe(0);
  });
});

describe('wiring into the core and the bridge (platform win32, whoami stood in for)', () => {
  it('gives the core a pipe named for the SID and the random part, kept owner-only in pipeNoncePath', () => {
    const { env } = windowsEnv();
    const io = { ...nodeWindowsPipeIo(env), whoamiUser: () => WHOAMI };
    const paths = hostPaths({ env, platform: 'win32', home: HOME, io });
    const noncePath = resolvePaths({ platform: 'win32', env, home: HOME }).pipeNoncePath;
    const nonce = readFileSync(noncePath, 'utf8');
    expect(isPipeNonce(nonce)).toBe(true);
    expect(paths.socketPath).toBe(`\\\\.\\pipe\\countersign-${SID}-${nonce}`);
    expect(statSync(noncePath).mode & 0o777).toBe(0o600);
    // a restart finds the same pipe
    expect(hostPaths({ env, platform: 'win32', home: HOME, io }).socketPath).toBe(paths.socketPath);
  });

  it('gives the bridge the same pipe name as the core, whichever runs first', () => {
    for (const bridgeFirst of [true, false]) {
      const { env } = windowsEnv();
      const bridge = () => resolveNodeHostPaths({ env, platform: 'win32', home: HOME, io: { ...nodeWindowsPipeIo(env), whoamiUser: () => WHOAMI } });
      const core = () => hostPaths({ env, platform: 'win32', home: HOME, io: { ...nodeWindowsPipeIo(env), whoamiUser: () => WHOAMI } });
      const [a, b] = bridgeFirst ? [bridge().paths.socketPath, core().socketPath] : [core().socketPath, bridge().paths.socketPath];
      expect(a).toBe(b);
      expect(a).toMatch(new RegExp(`^\\\\\\\\\\.\\\\pipe\\\\countersign-${SID}-[0-9a-f]{32}$`));
    }
  });

  it('gives a different pipe to another install (another random part) of the same user', () => {
    const one = windowsEnv();
    const two = windowsEnv();
    const io = (env: Record<string, string>) => ({ ...nodeWindowsPipeIo(env), whoamiUser: () => WHOAMI });
    expect(hostPaths({ env: one.env, platform: 'win32', home: HOME, io: io(one.env) }).socketPath).not.toBe(
      hostPaths({ env: two.env, platform: 'win32', home: HOME, io: io(two.env) }).socketPath,
    );
  });

  it('refuses to give the core a pipe name without the SID, and the bridge says why it will find no core', () => {
    const { env, dir } = windowsEnv();
    const noWhoami = { ...nodeWindowsPipeIo(env), whoamiUser: () => 'ERROR: The user name or password is incorrect.' };
    let error: unknown;
    try {
      hostPaths({ env, platform: 'win32', home: HOME, io: noWhoami });
    } catch (e) {
      error = e;
    }
    expect(AppError.is(error, 'SOCKET_UNSAFE')).toBe(true);
    expect((error as AppError).message).toMatch(/Windows account SID/);
    expect(resolveNodeHostPaths({ env, platform: 'win32', home: HOME, io: noWhoami }).problem).toMatch(/Windows account SID/);
    // nothing was written without a SID
    expect(readdirSync(dir)).toEqual([]);
  });

  it('leaves Linux and macOS paths exactly as resolvePaths gives them, without running whoami', () => {
    const untouchable: WindowsPipeIo = new Proxy({} as WindowsPipeIo, {
      get() {
        throw new Error('the Windows I/O was used off Windows');
      },
    });
    for (const platform of ['linux', 'darwin']) {
      const input = { platform, env: { COUNTERSIGN_HOME: '/t/h' }, home: '/home/u' };
      expect(hostPaths({ ...input, io: untouchable })).toEqual(resolvePaths(input));
      expect(resolveNodeHostPaths({ env: input.env, platform, home: input.home, io: untouchable })).toEqual({ paths: resolvePaths(input) });
    }
  });

  it('ends with one random part when bridges and a core create it at the same instant, every time', async () => {
    const dir = tempDir();
    const rounds = 25;
    const at = Date.now() + 1500;
    const racers = Array.from({ length: 6 }, (_, i) =>
      new Promise<string[]>((resolve, reject) => {
        const child = spawn(process.execPath, [join(ROOT, 'test/bridge/fixtures/pipe-nonce-racer.ts')], {
          env: { PATH: process.env.PATH ?? '', RACE_DIR: dir, RACE_AT: String(at), RACE_ROUNDS: String(rounds), RACER: i % 2 === 0 ? 'bridge' : 'core' },
          stdio: ['ignore', 'pipe', 'inherit'],
        });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as string[]) : reject(new Error(`racer exited with ${code}`))));
      }),
    );
    const byRacer = await Promise.all(racers);
    for (let round = 0; round < rounds; round++) {
      const names = byRacer.map((r) => r[round]);
      expect(new Set(names).size, `round ${round}`).toBe(1);
      expect(names[0]).toMatch(/^\\\\\.\\pipe\\countersign-S-1-5-21-111-222-333-1001-[0-9a-f]{32}$/);
    }
    // no temporary file left beside them
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  }, 20_000);

  it('makes the random part private to the SID before the file appears, for the core and the bridge alike', () => {
    {
      const make = nodeWindowsPipeIo; // the core's and the bridge's I/O: one function in common/node/
      const { env } = windowsEnv();
      const noncePath = resolvePaths({ platform: 'win32', env, home: HOME }).pipeNoncePath;
      const restricted: Array<{ path: string; sid: string; finalExisted: boolean; ino: number }> = [];
      const restrict = (path: string, sid: string): void =>
        void restricted.push({ path, sid, finalExisted: existsSync(noncePath), ino: statSync(path).ino });
      const io = { ...make(env, restrict), whoamiUser: () => WHOAMI };
      hostPaths({ env, platform: 'win32', home: HOME, io });
      expect(restricted).toHaveLength(1);
      expect(restricted[0]).toMatchObject({ sid: SID, finalExisted: false });
      expect(restricted[0]!.path).not.toBe(noncePath);
      // the file that appeared is the very one that was restricted (a hard link to it)
      expect(statSync(noncePath).ino).toBe(restricted[0]!.ino);
      // a damaged file is replaced by a restricted one too, never rewritten in place
      writeFileSync(noncePath, 'damaged');
      hostPaths({ env, platform: 'win32', home: HOME, io });
      expect(restricted).toHaveLength(2);
      expect(restricted[1]!.path).not.toBe(noncePath);
      expect(statSync(noncePath).ino).toBe(restricted[1]!.ino);
    }
  });

  it('leaves no file behind, and refuses the pipe, when the file cannot be made private', () => {
    {
      const make = nodeWindowsPipeIo; // the core's and the bridge's I/O: one function in common/node/
      const { env, dir } = windowsEnv();
      const failing = {
        ...make(env, () => {
          throw new Error('icacls: Access is denied.');
        }),
        whoamiUser: () => WHOAMI,
      };
      expect(() => hostPaths({ env, platform: 'win32', home: HOME, io: failing })).toThrow(/private to you/);
      expect(readdirSync(dir)).toEqual([]);
      // the next start, able to restrict, creates it
      hostPaths({ env, platform: 'win32', home: HOME, io: { ...make(env, () => {}), whoamiUser: () => WHOAMI } });
      expect(readdirSync(dir)).toHaveLength(1);
    }
  });

  it('asks icacls to drop inherited entries and grant the SID alone', () => {
    expect(icaclsArgs('C:\\Users\\alice\\AppData\\Local\\Countersign\\pipe-nonce.1.tmp', SID)).toEqual([
      'C:\\Users\\alice\\AppData\\Local\\Countersign\\pipe-nonce.1.tmp',
      '/inheritance:r',
      '/grant:r',
      `*${SID}:F`,
    ]);
  });

  it('replaces a damaged random part on disk with a fresh one', () => {
    const { env } = windowsEnv();
    const noncePath = resolvePaths({ platform: 'win32', env, home: HOME }).pipeNoncePath;
    writeFileSync(noncePath, 'garbage');
    const paths = hostPaths({ env, platform: 'win32', home: HOME, io: { ...nodeWindowsPipeIo(env), whoamiUser: () => WHOAMI } });
    expect(paths.socketPath.endsWith(readFileSync(noncePath, 'utf8'))).toBe(true);
    expect(isPipeNonce(readFileSync(noncePath, 'utf8'))).toBe(true);
  });
});
