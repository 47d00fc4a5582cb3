/**
 * What sign-in keeps in the SecretStore (the OS keychain), one entry per name under a per-issuer
 * prefix: the session (refresh token and user), this install's registered client (id and private
 * key), the DPoP key, and an administrator's one-time registration token. Every entry is parsed with
 * its schema when read: one that does not parse is reported as absent, never cast into shape.
 */
import { createHash, type webcrypto } from 'node:crypto';
import { z } from 'zod';
import type { SecretStore } from '../ports.ts';

/** A private EC key as a JWK: what `exportKey('jwk')` writes, with its `d`. */
const PrivateJwkSchema = z.looseObject({ kty: z.literal('EC'), crv: z.string(), x: z.string(), y: z.string(), d: z.string(), kid: z.string().optional() });

const SessionSchema = z.object({
  refresh_token: z.string().min(1),
  user: z.object({ sub: z.string().min(1), name: z.string().optional(), email: z.string().optional() }),
  acr: z.string().optional(),
});
export type StoredSession = z.infer<typeof SessionSchema>;

const ClientSchema = z.object({ client_id: z.string().min(1), jwk: PrivateJwkSchema });
export type StoredClient = z.infer<typeof ClientSchema>;

type Name = 'session' | 'client' | 'dpop-key' | 'registration-token';

function parsed<T>(schema: z.ZodType<T>, text: string | null): T | null | 'unreadable' {
  if (text === null) return null;
  try {
    const result = schema.safeParse(JSON.parse(text));
    return result.success ? result.data : 'unreadable';
  } catch {
    return 'unreadable';
  }
}

export class AuthKeychain {
  readonly #secrets: SecretStore;
  readonly #ns: string;

  constructor(secrets: SecretStore, issuer: string) {
    this.#secrets = secrets;
    this.#ns = createHash('sha256').update(issuer).digest('hex').slice(0, 12);
  }

  /** False when no keychain is usable and entries last only while the app runs. */
  get persistent(): boolean {
    return this.#secrets.kind === 'keychain';
  }

  #key(name: Name): string {
    return `${this.#ns}:${name}`;
  }

  /** The kept session; `unreadable` when an entry is there but is not one. Rejects when the keychain cannot be read. */
  async session(): Promise<StoredSession | null | 'unreadable'> {
    return parsed(SessionSchema, await this.#secrets.get(this.#key('session')));
  }

  setSession(session: StoredSession): Promise<void> {
    return this.#secrets.set(this.#key('session'), JSON.stringify(session));
  }

  async client(): Promise<StoredClient | null | 'unreadable'> {
    return parsed(ClientSchema, await this.#secrets.get(this.#key('client')));
  }

  setClient(client: { client_id: string; jwk: webcrypto.JsonWebKey }): Promise<void> {
    return this.#secrets.set(this.#key('client'), JSON.stringify(client));
  }

  async dpopKey(): Promise<webcrypto.JsonWebKey | null | 'unreadable'> {
    return parsed(PrivateJwkSchema, await this.#secrets.get(this.#key('dpop-key')));
  }

  setDpopKey(jwk: webcrypto.JsonWebKey): Promise<void> {
    return this.#secrets.set(this.#key('dpop-key'), JSON.stringify(jwk));
  }

  /** RFC 7591 §3's initial access token, provisioned by an administrator for one registration. */
  registrationToken(): Promise<string | null> {
    return this.#secrets.get(this.#key('registration-token'));
  }

  delete(name: Name): Promise<void> {
    return this.#secrets.delete(this.#key(name));
  }

  /** Deletes entries, ignoring a keychain that will not: used where forgetting is best effort. */
  async forget(...names: Name[]): Promise<void> {
    for (const name of names) await this.delete(name).catch(() => undefined);
  }
}
