import type { SecretStore } from '../ports.ts';

/**
 * The store used only when no OS keychain is usable: secrets live in this process's memory and die
 * with it, so the user signs in again at each start. It never writes a file. `reason` says why the
 * keychain could not be used, for the status the UI shows.
 */
export class MemorySecretStore implements SecretStore {
  readonly kind = 'memory' as const;
  readonly reason: string;
  readonly #entries = new Map<string, string>();

  constructor(reason: string) {
    this.reason = reason;
  }

  async get(key: string): Promise<string | null> {
    return this.#entries.get(key) ?? null;
  }

  async set(key: string, value: string): Promise<void> {
    this.#entries.set(key, value);
  }

  async delete(key: string): Promise<void> {
    this.#entries.delete(key);
  }
}
