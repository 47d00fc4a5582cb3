import { randomBytes } from 'node:crypto';
import { AsyncEntry } from '@napi-rs/keyring';
import { AppError } from '../../../common/errors.ts';
import type { SecretStore } from '../ports.ts';

const KEYCHAIN_SERVICE = 'Countersign';

/** On Linux, which store backs the keychain. Secret Service persists; the kernel keyring lasts until logout or reboot. */
export type LinuxKeychainStore = 'secret-service' | 'keyutils';

export interface KeychainOptions {
  /** The keychain's service name; every entry of the app lives under it. */
  service?: string;
  /**
   * Pinned on purpose: @napi-rs/keyring otherwise falls back from Secret Service to the kernel keyring
   * without saying so, and a silent fallback is what we avoid. Ignored off Linux.
   */
  linuxStore?: LinuxKeychainStore;
}

/**
 * The OS keychain (macOS Keychain, Windows Credential Manager, Secret Service or the kernel keyring)
 * through @napi-rs/keyring. One entry per key, under the service "Countersign".
 *
 * Failures are told apart by where they happen, not by the library's message text: when an entry
 * cannot even be created the keychain service is not reachable (KEYCHAIN_UNAVAILABLE); when the
 * service answers but refuses to read or write, it is locked or access is denied (KEYCHAIN_LOCKED).
 */
export class KeychainSecretStore implements SecretStore {
  readonly kind = 'keychain' as const;
  readonly service: string;
  readonly linuxStore: LinuxKeychainStore;

  private constructor(service: string, linuxStore: LinuxKeychainStore) {
    this.service = service;
    this.linuxStore = linuxStore;
  }

  /** Opens the keychain and proves it usable with a write, a read-back and a delete. */
  static async open(options: KeychainOptions = {}): Promise<KeychainSecretStore> {
    const store = new KeychainSecretStore(options.service ?? KEYCHAIN_SERVICE, options.linuxStore ?? 'secret-service');
    const probeKey = `probe-${randomBytes(6).toString('hex')}`;
    const probeValue = randomBytes(16).toString('base64url');
    await store.set(probeKey, probeValue);
    const back = await store.get(probeKey);
    await store.delete(probeKey);
    if (back !== probeValue) {
      throw new AppError('KEYCHAIN_UNAVAILABLE', 'The OS keychain did not return what was written to it, so it cannot be trusted with your sign-in.');
    }
    return store;
  }

  #entry(key: string): AsyncEntry {
    try {
      return new AsyncEntry(this.service, key, process.platform === 'linux' ? { linux: { store: this.linuxStore } } : undefined);
    } catch (error) {
      throw new AppError('KEYCHAIN_UNAVAILABLE', `The OS keychain (${this.#name()}) is not available, so nothing can be kept between starts.`, {
        cause: error,
      });
    }
  }

  #refused(error: unknown): AppError {
    return new AppError('KEYCHAIN_LOCKED', `The OS keychain (${this.#name()}) is locked or refused access. Unlock it and try again.`, { cause: error });
  }

  #name(): string {
    if (process.platform === 'darwin') return 'macOS Keychain';
    if (process.platform === 'win32') return 'Windows Credential Manager';
    return this.linuxStore === 'secret-service' ? 'Secret Service' : 'kernel keyring';
  }

  async get(key: string): Promise<string | null> {
    const entry = this.#entry(key);
    try {
      return (await entry.getPassword()) ?? null;
    } catch (error) {
      throw this.#refused(error);
    }
  }

  async set(key: string, value: string): Promise<void> {
    const entry = this.#entry(key);
    try {
      await entry.setPassword(value);
    } catch (error) {
      throw this.#refused(error);
    }
  }

  async delete(key: string): Promise<void> {
    const entry = this.#entry(key);
    try {
      await entry.deleteCredential();
    } catch (error) {
      throw this.#refused(error);
    }
  }
}
