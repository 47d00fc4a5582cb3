import { spawn } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AppError } from '../../../common/errors.ts';
import { connectOnce } from '../../../bridge/core-connection.ts';
import { LOCK_FILE, acquireCoreLock, bootTime, parseProcStatStart, startTimeOf } from '../../../main/core/mcp/core-lock.ts';
import { startSocketServer, type SocketServer } from '../../../main/core/mcp/socket-server.ts';
import { ROOT, quietLog, tempHome } from '../../bridge/helpers.ts';
import { fixtureToolHost } from './fixtures/tool-host.ts';
import type { RacerRound } from './fixtures/racing-core.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function home(): ReturnType<typeof tempHome> {
  const h = tempHome('cs-lock-');
  cleanups.push(() => h.cleanup());
  return h;
}

const start = (paths: ReturnType<typeof tempHome>['paths']): Promise<SocketServer> => startSocketServer({ paths, toolHost: fixtureToolHost(), log: quietLog });

/** Starts `n` cores at once and returns who won and why the others refused. */
async function race(paths: ReturnType<typeof tempHome>['paths'], n: number): Promise<{ winners: SocketServer[]; refusals: unknown[] }> {
  const settled = await Promise.allSettled(Array.from({ length: n }, () => start(paths)));
  const winners = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const refusals = settled.flatMap((s) => (s.status === 'rejected' ? [s.reason as unknown] : []));
  return { winners, refusals };
}

/** The pid of a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid!;
}

async function answersWithItsSecret(paths: { socketPath: string; secretPath: string }): Promise<boolean> {
  const { socket } = await connectOnce(paths);
  socket.destroy();
  return true;
}

describe('one core per user: the start lock', () => {
  it('of two cores started at the same instant in one process, exactly one runs, every time', async () => {
    const h = home();
    for (let round = 0; round < 60; round++) {
      const { winners, refusals } = await race(h.paths, 2);
      expect(winners).toHaveLength(1);
      expect(refusals).toHaveLength(1);
      expect(AppError.is(refusals[0], 'ALREADY_RUNNING')).toBe(true);
      // the loser left the winner's socket, secret and lock in place
      expect(await answersWithItsSecret(h.paths)).toBe(true);
      await winners[0]!.close();
      expect(existsSync(join(h.paths.runDir, LOCK_FILE))).toBe(false);
    }
  });

  it('of four core processes started at the same instant, exactly one runs, every time', async () => {
    const h = home();
    // Twice the rounds the check needs: on a loaded machine (load 9 beside other suites) a third of
    // the rounds had a racer the scheduler ran late.
    const rounds = 30;
    const racers = Array.from({ length: 4 }, () => {
      const child = spawn(process.execPath, [join(ROOT, 'test/core/mcp/fixtures/racing-core.ts')], {
        env: { PATH: process.env.PATH ?? '', COUNTERSIGN_HOME: h.home, RACE_ROUNDS: String(rounds), RACE_SLOT_MS: '500' },
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      cleanups.push(() => void (child.exitCode === null && child.kill('SIGKILL')));
      let out = '';
      const ready = new Promise<void>((resolve) => child.stdout!.on('data', (d: Buffer) => ((out += d.toString()), out.startsWith('ready\n') && resolve())));
      const result = new Promise<RacerRound[]>((resolve, reject) =>
        child.once('exit', (code) => (code === 0 ? resolve(JSON.parse(out.slice('ready\n'.length)) as RacerRound[]) : reject(new Error(`a racer exited with ${code}`)))),
      );
      return { child, ready, result };
    });
    // every racer has loaded everything before the first round is set
    await Promise.all(racers.map((r) => r.ready));
    const at = Date.now() + 200;
    for (const r of racers) r.child.stdin!.end(`${at}\n`);
    const byRacer = await Promise.all(racers.map((r) => r.result));
    let full = 0;
    for (let round = 0; round < rounds; round++) {
      const said = byRacer.map((r) => r[round]!.said);
      // Exactly one winner when every racer ran on time. A racer marked `late` did not race (the
      // machine ran it late, or ran its attempt past the winner's close); it may even have won after
      // the round's winner closed, which the check below tells apart from two cores at once.
      const winners = said.filter((w) => w === 'won');
      if (said.includes('late')) expect(winners.length, `round ${round}: ${said.join(', ')}`).toBeLessThanOrEqual(1);
      else expect(winners, `round ${round}: ${said.join(', ')}`).toHaveLength(1);
      expect(said.every((w) => ['won', 'ALREADY_RUNNING', 'late'].includes(w)), said.join(', ')).toBe(true);
      if (!said.includes('late')) full += 1;
    }
    // Never two cores at once, late racers included: no two spans in which a core surely held the lock overlap.
    const held = byRacer.flatMap((r, racer) => r.flatMap((e, round) => (e.held ? [{ racer, round, from: e.held[0], to: e.held[1] }] : []))).sort((a, b) => a.from - b.from);
    for (let i = 1; i < held.length; i++) {
      const [before, after] = [held[i - 1]!, held[i]!];
      expect(after.from, `racer ${after.racer} (round ${after.round}) started while racer ${before.racer} (round ${before.round}) held the lock`).toBeGreaterThan(before.to);
    }
    // most rounds had all four racing (a round with a racer the machine ran late has fewer)
    expect(full).toBeGreaterThanOrEqual(10);
    expect(existsSync(join(h.paths.runDir, LOCK_FILE))).toBe(false);
  }, 60_000);

  it('refuses to start while a live core holds the lock, even when that core lost its socket file, and names the process', async () => {
    const h = home();
    const first = await start(h.paths);
    cleanups.push(() => first.close());
    const secret = readFileSync(h.paths.secretPath, 'utf8');
    rmSync(h.paths.socketPath);
    const error = await start(h.paths).catch((e: unknown) => e);
    expect(AppError.is(error, 'ALREADY_RUNNING')).toBe(true);
    expect((error as AppError).message).toContain(`process ${process.pid}`);
    expect(readFileSync(h.paths.secretPath, 'utf8')).toBe(secret);
  });

  it('replaces a lock left by a core that died', async () => {
    const h = home();
    mkdirSync(h.paths.runDir, { mode: 0o700 });
    writeFileSync(join(h.paths.runDir, LOCK_FILE), JSON.stringify({ pid: await deadPid(), token: 'dead' }));
    const server = await start(h.paths);
    cleanups.push(() => server.close());
    expect(JSON.parse(readFileSync(join(h.paths.runDir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid });
    expect(await answersWithItsSecret(h.paths)).toBe(true);
  });

  it.runIf(process.platform === 'linux')('replaces a lock whose pid now belongs to a process that started at another time', async () => {
    const h = home();
    mkdirSync(h.paths.runDir, { mode: 0o700 });
    // this very process is alive, but not the one that wrote the lock
    writeFileSync(join(h.paths.runDir, LOCK_FILE), JSON.stringify({ pid: process.pid, start: '1', token: 'reused' }));
    const server = await start(h.paths);
    cleanups.push(() => server.close());
    expect(JSON.parse(readFileSync(join(h.paths.runDir, LOCK_FILE), 'utf8'))).toMatchObject({ pid: process.pid, start: startTimeOf(process.pid) });
  });

  it('replaces a lock written before the machine last booted, though its pid is now a live process', async () => {
    const h = home();
    mkdirSync(h.paths.runDir, { mode: 0o700 });
    // after a reboot the old pid may belong to anything; here it is this very (live) process
    writeFileSync(join(h.paths.runDir, LOCK_FILE), JSON.stringify({ pid: process.pid, boot: bootTime() - 86_400, token: 'last-boot' }));
    const server = await start(h.paths);
    cleanups.push(() => server.close());
    const owner = JSON.parse(readFileSync(join(h.paths.runDir, LOCK_FILE), 'utf8')) as { pid: number; boot: number; token: string };
    expect(owner.pid).toBe(process.pid);
    expect(owner.token).not.toBe('last-boot');
    expect(Math.abs(owner.boot - bootTime())).toBeLessThanOrEqual(2);
  });

  it('lets exactly one of several cores take over the same stale lock', async () => {
    const h = home();
    mkdirSync(h.paths.runDir, { mode: 0o700 });
    const dead = await deadPid();
    for (let round = 0; round < 30; round++) {
      writeFileSync(join(h.paths.runDir, LOCK_FILE), JSON.stringify({ pid: dead, token: `stale-${round}` }));
      const { winners, refusals } = await race(h.paths, 3);
      expect(winners).toHaveLength(1);
      expect(refusals.every((r) => AppError.is(r, 'ALREADY_RUNNING'))).toBe(true);
      await winners[0]!.close();
    }
  });

  it('treats a young unreadable lock as held and an old one as stale', async () => {
    const h = home();
    mkdirSync(h.paths.runDir, { mode: 0o700 });
    const lockPath = join(h.paths.runDir, LOCK_FILE);
    writeFileSync(lockPath, '{"pid":');
    await expect(acquireCoreLock(h.paths.runDir)).rejects.toMatchObject({ code: 'ALREADY_RUNNING' });
    const { utimesSync } = await import('node:fs');
    utimesSync(lockPath, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    const lock = await acquireCoreLock(h.paths.runDir);
    await lock.release();
    expect(existsSync(lockPath)).toBe(false);
  });

  it('releases only its own lock', async () => {
    const h = home();
    mkdirSync(h.paths.runDir, { mode: 0o700 });
    const lock = await acquireCoreLock(h.paths.runDir, { isAlive: () => false });
    // a later core took over (here: it judged this one dead) before this one released
    const other = await acquireCoreLock(h.paths.runDir, { isAlive: () => false });
    await lock.release();
    expect(JSON.parse(readFileSync(lock.path, 'utf8'))).toMatchObject({ token: other.owner.token });
    await other.release();
    expect(existsSync(lock.path)).toBe(false);
  });

  it('reads the start time from /proc/<pid>/stat even when the command name holds spaces and parentheses', () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i + 3));
    expect(parseProcStatStart(`1234 (a (b) c) ${fields.join(' ')}`)).toBe('22');
    expect(parseProcStatStart('garbage')).toBeUndefined();
  });
});
