/** Shared set-up for the bridge tests: a fresh COUNTERSIGN_HOME, a freshly bundled bridge, a raw stdio client. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { resolvePaths, type CountersignPaths } from '../../common/paths.ts';
import { LineSplitter } from '../../common/handshake.ts';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const quietLog = { info() {}, warn() {}, error() {} };

/** Bundles bridge/ with the project's build script into `dir`, as `npm run build:bridge` does into dist/. */
export function buildBridgeInto(dir: string): string {
  const outfile = join(dir, 'bridge.mjs');
  execFileSync(process.execPath, [join(ROOT, 'scripts/build-bridge.mjs'), '--outfile', outfile], { stdio: 'pipe' });
  return outfile;
}

export function tempHome(prefix = 'cs-'): { home: string; paths: CountersignPaths; cleanup(): void } {
  const home = mkdtempSync(join(tmpdir(), prefix));
  return {
    home,
    paths: resolvePaths({ platform: process.platform, env: { COUNTERSIGN_HOME: home }, home: '/nonexistent' }),
    cleanup: () => rmSync(home, { recursive: true, force: true }),
  };
}

export type Message = Record<string, unknown>;

/** Drives a bridge process over its raw stdio, to see exactly what it writes. */
export interface RawBridge {
  child: ChildProcess;
  lines: string[];
  send(message: unknown): void;
  sendRaw(text: string): void;
  /** The next message that satisfies `match`, waiting up to `ms`. */
  waitFor(match: (m: Message) => boolean, ms?: number): Promise<Message>;
  stop(): Promise<void>;
}

export function spawnRawBridge(bridgePath: string, env: Record<string, string>, node = process.execPath, nodeArgs: string[] = []): RawBridge {
  const child = spawn(node, [...nodeArgs, bridgePath], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const messages: Message[] = [];
  const waiters: Array<{ match: (m: Message) => boolean; resolve: (m: Message) => void }> = [];
  const splitter = new LineSplitter({
    maxLineBytes: 64 * 1024 * 1024,
    onLine: (line) => {
      lines.push(line);
      let m: Message;
      try {
        m = JSON.parse(line) as Message;
      } catch {
        return;
      }
      const w = waiters.find((w) => w.match(m));
      if (w) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      } else messages.push(m);
    },
  });
  child.stdout!.on('data', (c: Buffer) => splitter.push(c));
  child.stderr!.on('data', () => {});
  return {
    child,
    lines,
    send: (message) => child.stdin!.write(JSON.stringify(message) + '\n'),
    sendRaw: (text) => child.stdin!.write(text),
    waitFor(match, ms = 10_000) {
      const found = messages.find(match);
      if (found) {
        messages.splice(messages.indexOf(found), 1);
        return Promise.resolve(found);
      }
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('timed out waiting for a message from the bridge')), ms);
        waiters.push({
          match,
          resolve: (m) => {
            clearTimeout(timer);
            resolve(m);
          },
        });
      });
    },
    stop() {
      if (child.exitCode !== null) return Promise.resolve();
      return new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGKILL');
      });
    },
  };
}

export const INIT = {
  jsonrpc: '2.0',
  id: 0,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'raw-test-client', version: '1.0.0' } },
};
