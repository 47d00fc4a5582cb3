/**
 * The OS keychain locked, on a private Secret Service (gnome-keyring on its own D-Bus, test/helpers/
 * keyring.ts): locked while the app runs, and locked when it starts. The audit store's install keys
 * live in the keychain, so these are the faults that touch it without the sign-in flow.
 */
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../common/errors.ts';
import { AuditStore } from '../../main/core/audit/store.ts';
import { createBroker } from '../../main/core/broker/index.ts';
import { KeychainSecretStore } from '../../main/core/secrets/keychain-store.ts';
import { openSecretStore } from '../../main/core/secrets/open-secret-store.ts';
import { startTestKeyring, type TestKeyring } from '../helpers/keyring.ts';
import { call, faultLedger, reportCounters, startReliabilityLab, type ReliabilityLab } from './harness.ts';

let r: ReliabilityLab;
let keyring: TestKeyring;
let work: string;
const ledger = faultLedger();

beforeAll(async () => {
  keyring = await startTestKeyring({ private: true });
  r = await startReliabilityLab();
  work = await mkdtemp(join(tmpdir(), 'countersign-keychain-'));
}, 60_000);
afterAll(async () => {
  await reportCounters('keychain', { faults: ledger.outcomes() });
  await r?.stop();
  await keyring?.stop();
  if (work) await rm(work, { recursive: true, force: true });
});

const readCall = () => call('query', { sql: 'SELECT id FROM patients ORDER BY id' });

async function filesUnder(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true })) if (e.isFile()) out.push(join(e.parentPath, e.name));
  return out;
}

describe('the keychain locked', () => {
  it('while the app runs: calls keep being answered and recorded (the keys are held in memory while used), and nothing lands in the keyring in plaintext', async () => {
    await ledger.run('keychain locked while the app runs', 'in-process', async () => {
    const secrets = await KeychainSecretStore.open();
    const audit = await AuditStore.open({ dataDir: join(work, 'running'), secrets });
    try {
      const broker = createBroker({ connectors: [r.postgresConnector()], tokens: r.alice, idp: r.exchanger, vault: r.vaultClient, audit });
      expect((await broker.callTool(readCall())).isError).toBeFalsy();
      await keyring.relock();
      try {
        await expect(secrets.set('while-locked', 'must-not-be-written-anywhere')).rejects.toMatchObject({ code: 'KEYCHAIN_LOCKED' });
        const result = await broker.callTool(readCall());
        expect(result.isError, JSON.stringify(result.content)).toBeFalsy();
        expect(audit.count()).toBe(2);
        expect((await audit.verify()).ok).toBe(true);
        expect(await r.settled(8_000)).toEqual({ roles: [], leases: 0 });
        for (const file of await filesUnder(keyring.dataDir)) {
          const bytes = await readFile(file);
          expect(bytes.includes(Buffer.from('must-not-be-written-anywhere'))).toBe(false);
          expect(bytes.includes(Buffer.from(r.alice.accessToken.split('.')[1]!))).toBe(false);
        }
      } finally {
        await keyring.unlock();
      }
    } finally {
      await audit.close();
    }
    });
  });

  it('when the app starts: the keychain and the audit store refuse with KEYCHAIN_LOCKED and a sentence (no silent fallback); the host falls back to memory, says why, and calls are answered and recorded', async () => {
    await ledger.run('keychain locked when the app starts', 'in-process', async () => {
    const opensBeforeTheLock = await KeychainSecretStore.open();
    await keyring.relock();
    try {
      const refused = await KeychainSecretStore.open().catch((e: unknown) => e);
      expect(AppError.is(refused, 'KEYCHAIN_LOCKED'), String(refused)).toBe(true);
      expect((refused as AppError).message).toMatch(/locked.*Unlock it/);
      // The audit store cannot create its install keys in a locked keychain: it refuses to open.
      const auditRefused = await AuditStore.open({ dataDir: join(work, 'locked'), secrets: opensBeforeTheLock }).catch((e: unknown) => e);
      expect(AppError.is(auditRefused, 'KEYCHAIN_LOCKED'), String(auditRefused)).toBe(true);
      const opened = await openSecretStore();
      expect(opened.status).toMatchObject({ persistent: false, kind: 'memory', code: 'KEYCHAIN_LOCKED' });
      expect(String((opened.status as { reason: string }).reason)).toContain('sign in each time');
      const audit = await AuditStore.open({ dataDir: join(work, 'fallback'), secrets: opened.store });
      try {
        const broker = createBroker({ connectors: [r.postgresConnector()], tokens: r.alice, idp: r.exchanger, vault: r.vaultClient, audit });
        const result = await broker.callTool(readCall());
        expect(result.isError, JSON.stringify(result.content)).toBeFalsy();
        expect(audit.count()).toBe(1);
        expect((await audit.verify()).ok).toBe(true);
        expect(await r.settled(8_000)).toEqual({ roles: [], leases: 0 });
      } finally {
        await audit.close();
      }
    } finally {
      await keyring.unlock();
    }
    });
  });
});

describe('the keychain daemon going away', () => {
  it('killed with SIGKILL while the app runs: the call is answered and recorded once, every keychain use refuses with KEYCHAIN_LOCKED in time, and after the daemon returns the next call and a fresh start work', async () => {
    await ledger.run('keychain daemon killed with SIGKILL', 'process', async () => {
      const secrets = await KeychainSecretStore.open();
      const audit = await AuditStore.open({ dataDir: join(work, 'daemon-running'), secrets });
      try {
        const broker = createBroker({ connectors: [r.postgresConnector()], tokens: r.alice, idp: r.exchanger, vault: r.vaultClient, audit });
        expect((await broker.callTool(readCall())).isError).toBeFalsy();
        await keyring.kill();
        try {
          const t0 = performance.now();
          const write = await secrets.set('while-gone', 'must-not-be-written-anywhere').catch((e: unknown) => e);
          // The client asking for the Secret Service makes the bus start a new daemon (D-Bus activation,
          // as on a desktop), whose keyring is locked: KEYCHAIN_LOCKED, until the person unlocks it.
          expect(AppError.is(write, 'KEYCHAIN_LOCKED'), String(write)).toBe(true);
          // A new start cannot create or read its install keys: it refuses rather than run unaudited.
          const refused = await AuditStore.open({ dataDir: join(work, 'daemon-gone'), secrets }).catch((e: unknown) => e);
          expect(AppError.is(refused, 'KEYCHAIN_LOCKED'), String(refused)).toBe(true);
          expect((refused as AppError).message.length).toBeGreaterThan(20);
          expect(performance.now() - t0).toBeLessThan(10_000);
          // The running app holds its keys in memory while used: the call goes on and is recorded once.
          const result = await broker.callTool(readCall());
          expect(result.isError, JSON.stringify(result.content)).toBeFalsy();
          expect(audit.count()).toBe(2);
          expect((await audit.verify()).ok).toBe(true);
          expect(await r.settled(8_000)).toEqual({ roles: [], leases: 0 });
        } finally {
          await keyring.unlock();
        }
        const after = await broker.callTool(readCall());
        expect(after.isError, JSON.stringify(after.content)).toBeFalsy();
        expect(audit.count()).toBe(3);
        // A new start opens the keychain and creates its install keys again.
        const reopened = await AuditStore.open({ dataDir: join(work, 'daemon-back'), secrets: await KeychainSecretStore.open() });
        await reopened.close();
      } finally {
        await audit.close();
      }
    });
  });
});
