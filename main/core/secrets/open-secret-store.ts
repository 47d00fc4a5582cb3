import type { KeychainState } from '../../../common/contract.ts';
import { AppError } from '../../../common/errors.ts';
import type { SecretStore } from '../ports.ts';
import { KeychainSecretStore } from './keychain-store.ts';
import type { KeychainOptions } from './keychain-store.ts';
import { MemorySecretStore } from './memory-store.ts';

/** What the UI shows about where secrets live: the status's `keychain` (common/contract/status.ts), with the store's kind. */
export type SecretStoreStatus =
  | { persistent: true; kind: 'keychain' }
  | { persistent: false; kind: 'memory'; code: Extract<KeychainState, { persistent: false }>['code']; reason: string };

export interface OpenedSecretStore {
  store: SecretStore;
  status: SecretStoreStatus;
}

/**
 * The keychain when one is usable; otherwise a memory store, so the app still runs but persists
 * nothing (the user signs in at each start) and the status says why. Never a plaintext file.
 */
export async function openSecretStore(options: KeychainOptions & { log?: (line: string) => void } = {}): Promise<OpenedSecretStore> {
  try {
    const store = await KeychainSecretStore.open(options);
    options.log?.(`secrets: OS keychain in use (service ${store.service})`);
    return { store, status: { persistent: true, kind: 'keychain' } };
  } catch (error) {
    const app = AppError.from(error, 'KEYCHAIN_UNAVAILABLE', 'The OS keychain is not available.');
    // The keychain is probed only here, at start: the reason says so, for the person to act on it.
    const reason = `${app.message} Nothing is kept between starts: you will sign in each time the app starts. Countersign looks for the keychain when it starts: restart it once the keychain is usable.`;
    const code = app.code === 'KEYCHAIN_LOCKED' ? 'KEYCHAIN_LOCKED' : 'KEYCHAIN_UNAVAILABLE';
    options.log?.(`secrets: ${code}: keeping secrets in memory only`);
    return { store: new MemorySecretStore(reason), status: { persistent: false, kind: 'memory', code, reason } };
  }
}
