/**
 * The web host's secrets: the one-time launch tokens and the page bearers, held only as SHA-256
 * digests and compared in constant time, so neither a timing nor a memory dump of the map gives one back.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** 256 random bits, URL-safe: a launch token or a bearer. */
export function newSecret(): string {
  return randomBytes(32).toString('base64url');
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

export /** A set of secrets held as digests and compared in constant time. */
class SecretSet {
  private readonly entries = new Map<string, number>();

  add(secret: string, expiresAt = Infinity): void {
    this.entries.set(digest(secret).toString('hex'), expiresAt);
  }

  /** Whether `candidate` is a live member; `consume` removes it so it works once. */
  check(candidate: string, consume: boolean): boolean {
    const d = digest(candidate);
    const now = Date.now();
    for (const [hex, expiresAt] of this.entries) {
      if (expiresAt <= now) {
        this.entries.delete(hex);
        continue;
      }
      if (timingSafeEqual(Buffer.from(hex, 'hex'), d)) {
        if (consume) this.entries.delete(hex);
        return true;
      }
    }
    return false;
  }

  clear(): void {
    this.entries.clear();
  }
}
