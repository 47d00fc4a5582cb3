import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../../common/errors.ts';
import { KeychainSecretStore } from '../../../main/core/secrets/keychain-store.ts';
import { openSecretStore } from '../../../main/core/secrets/open-secret-store.ts';
import { startTestKeyring } from '../../helpers/keyring.ts';
import type { TestKeyring } from '../../helpers/keyring.ts';

const run = promisify(execFile);

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile()) out.push(join(e.parentPath, e.name));
  }
  return out;
}

let keyring: TestKeyring;

beforeAll(async () => {
  keyring = await startTestKeyring({ private: true });
});

afterAll(async () => {
  await keyring?.stop();
});

describe('the keychain secret store on Secret Service', () => {
  it('keeps a secret under the service "Countersign" where secret-tool can read it, and in no plaintext file', () =>
    keyring.retryIfDaemonDied(async () => {
      const store = await KeychainSecretStore.open();
      const secret = `planted-${Math.random().toString(36).slice(2)}`;
      await store.set('test-entry', secret);
      expect(await store.get('test-entry')).toBe(secret);
      const { stdout } = await run('secret-tool', ['lookup', 'service', 'Countersign', 'username', 'test-entry'], { env: { ...process.env, ...keyring.env } });
      expect(stdout).toBe(secret);
      for (const file of await filesUnder(keyring.dataDir)) {
        expect((await readFile(file)).includes(Buffer.from(secret))).toBe(false);
      }
      await store.delete('test-entry');
      expect(await store.get('test-entry')).toBeNull();
    }));

  it('answers null for an entry that was never written and deletes a missing entry quietly', () =>
    keyring.retryIfDaemonDied(async () => {
      const store = await KeychainSecretStore.open();
      expect(await store.get('never-written')).toBeNull();
      await expect(store.delete('never-written')).resolves.toBeUndefined();
    }));

  it('fails closed with KEYCHAIN_UNAVAILABLE when no Secret Service can be reached, and falls back to memory saying why', async () => {
    // The keyring library keeps its bus connection for the life of a process, so a fresh process
    // started on a bus address where nothing listens is what "no Secret Service" looks like.
    const script = `
      import { KeychainSecretStore } from './main/core/secrets/keychain-store.ts';
      import { openSecretStore } from './main/core/secrets/open-secret-store.ts';
      const error = await KeychainSecretStore.open().then(() => null, (e) => ({ code: e.code, message: e.message }));
      const opened = await openSecretStore();
      console.log(JSON.stringify({ error, kind: opened.store.kind, status: opened.status }));
    `;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
      cwd: process.cwd(),
      env: { ...process.env, DBUS_SESSION_BUS_ADDRESS: `unix:path=${join(keyring.env.XDG_RUNTIME_DIR, 'no-such-bus')}` },
    });
    const out = JSON.parse(stdout) as { error: { code: string; message: string } | null; kind: string; status: Record<string, unknown> };
    expect(out.error?.code).toBe('KEYCHAIN_UNAVAILABLE');
    expect(out.error?.message).toContain('Secret Service');
    expect(out.error?.message).not.toContain('no-such-bus');
    expect(out.kind).toBe('memory');
    expect(out.status).toMatchObject({ persistent: false, code: 'KEYCHAIN_UNAVAILABLE' });
    expect(String(out.status.reason)).toContain('sign in each time');
  });

  it('fails closed with KEYCHAIN_LOCKED when the keyring is locked, and writes no plaintext anywhere', () =>
    keyring.retryIfDaemonDied(async () => {
      const store = await KeychainSecretStore.open();
      await keyring.relock();
      try {
        const error = await store.set('while-locked', 'must-not-be-written-anywhere').catch((e: unknown) => e);
        expect(AppError.is(error, 'KEYCHAIN_LOCKED')).toBe(true);
        const opened = await openSecretStore();
        expect(opened.store.kind).toBe('memory');
        expect(opened.status).toMatchObject({ persistent: false, code: 'KEYCHAIN_LOCKED' });
        for (const file of await filesUnder(keyring.dataDir)) {
          expect((await readFile(file)).includes(Buffer.from('must-not-be-written-anywhere'))).toBe(false);
        }
      } finally {
        await keyring.unlock();
      }
      await expect(KeychainSecretStore.open()).resolves.toBeInstanceOf(KeychainSecretStore);
    }));
});
