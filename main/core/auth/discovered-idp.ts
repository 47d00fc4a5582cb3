/**
 * The identity provider as sign-in found it: its discovery, the client this install is there
 * (./install-client.ts) and, when the IdP binds tokens, this install's DPoP key (./dpop-key.ts).
 * Discovered once and again after a failure or after `forget`.
 */
import type { webcrypto } from 'node:crypto';
import { idpError, IDP_STEPS } from '../idp/errors.ts';
import type { IdpConfig } from './config.ts';
import { installDpopKey } from './dpop-key.ts';
import type { GrantContext } from './grants.ts';
import { discoverInstallClient, type InstallClient } from './install-client.ts';
import type { AuthKeychain } from './keychain.ts';

export class DiscoveredIdp {
  readonly #idp: IdpConfig;
  readonly #keychain: AuthKeychain;
  readonly #log: (line: string) => void;
  #grants: Promise<GrantContext> | undefined;
  #client: InstallClient | undefined;
  #dpop: webcrypto.CryptoKeyPair | undefined;

  constructor(idp: IdpConfig, keychain: AuthKeychain, log: (line: string) => void) {
    this.#idp = idp;
    this.#keychain = keychain;
    this.#log = log;
  }

  /** The client found at the last discovery, if any. */
  get client(): InstallClient | undefined {
    return this.#client;
  }

  get dpop(): webcrypto.CryptoKeyPair | undefined {
    return this.#dpop;
  }

  /** What every grant needs; a failed discovery is an `AppError` and is tried again next time. */
  grants(): Promise<GrantContext> {
    this.#grants ??= this.#configure().catch((error: unknown) => {
      this.#grants = undefined;
      throw idpError(error, IDP_STEPS.discovery);
    });
    return this.#grants;
  }

  /** Forgets the discovery and the client (the DPoP key too with `dpop`), in memory; the keychain is the caller's. */
  forget(o: { dpop?: boolean } = {}): void {
    this.#grants = undefined;
    this.#client = undefined;
    if (o.dpop) this.#dpop = undefined;
  }

  async #configure(): Promise<GrantContext> {
    const { config, client } = await discoverInstallClient(this.#idp, this.#keychain, this.#log);
    if (this.#idp.dpop === 'when-offered' && config.serverMetadata().dpop_signing_alg_values_supported?.includes('ES256')) {
      this.#dpop = await installDpopKey(this.#keychain, this.#log);
    }
    this.#client = client;
    return { idp: this.#idp, config, client, dpop: this.#dpop };
  }
}
