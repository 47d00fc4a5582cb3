/**
 * Lease expiry, as Vault's expiration manager (vault/expiration.go): every secret with a lease is
 * revoked when its TTL runs out, a revocation that fails is retried with back-off, and the sys/leases
 * endpoints look up, renew and revoke leases.
 */
import type { Lease } from './types.ts';

export interface NewLease {
  id: string;
  ttl: number;
  renewable: boolean;
  tokenId: string | null;
  revoke: () => Promise<void>;
}

export class ExpirationManager {
  readonly #leases = new Map<string, Lease>();
  /** The lease ids a stored token holds (revoked with it), or undefined for no such token. */
  readonly #heldBy: (tokenId: string) => Set<string> | undefined;
  readonly #log: (line: string) => void;
  stopping = false;

  constructor(heldBy: (tokenId: string) => Set<string> | undefined, log: (line: string) => void) {
    this.#heldBy = heldBy;
    this.#log = log;
  }

  get size(): number {
    return this.#leases.size;
  }

  ids(): string[] {
    return [...this.#leases.keys()];
  }

  get(id: string): Lease | undefined {
    return this.#leases.get(id);
  }

  add(o: NewLease): Lease {
    const holder = o.tokenId ? this.#heldBy(o.tokenId) : undefined;
    const lease: Lease = {
      id: o.id,
      issueTime: Date.now(),
      expiresAt: Date.now() + o.ttl * 1000,
      ttl: o.ttl,
      renewable: o.renewable,
      // A lease minted under an OAuth JWT belongs to no stored token (the JWT is never kept).
      tokenId: holder ? o.tokenId : null,
      revoke: o.revoke,
      attempts: 0,
    };
    this.#leases.set(lease.id, lease);
    holder?.add(lease.id);
    this.schedule(lease, o.ttl * 1000);
    return lease;
  }

  /** Revokes at `ms` from now; a failed revocation is retried with back-off, as Vault does. */
  schedule(lease: Lease, ms: number): void {
    if (lease.timer) clearTimeout(lease.timer);
    lease.timer = setTimeout(() => {
      void this.revoke(lease.id).catch(() => {
        lease.attempts += 1;
        if (!this.stopping) this.schedule(lease, Math.min(30_000, 500 * 2 ** lease.attempts));
      });
    }, Math.max(0, ms));
    lease.timer.unref();
  }

  /** After a revocation a caller asked for failed: try again soon. */
  retrySoon(id: string): void {
    const lease = this.#leases.get(id);
    if (lease && !this.stopping) this.schedule(lease, 500);
  }

  async revoke(id: string): Promise<void> {
    const lease = this.#leases.get(id);
    if (!lease) return;
    await lease.revoke();
    if (lease.timer) clearTimeout(lease.timer);
    this.#leases.delete(id);
    if (lease.tokenId) this.#heldBy(lease.tokenId)?.delete(id);
    this.#log(`vault: lease revoked ${id}`);
  }

  async revokePrefix(prefix: string, ignoreFailures = false): Promise<void> {
    for (const id of this.ids()) {
      if (!id.startsWith(prefix)) continue;
      if (ignoreFailures) await this.revoke(id).catch(() => {});
      else await this.revoke(id);
    }
  }

  renew(lease: Lease, increment: number): void {
    lease.expiresAt = Date.now() + increment * 1000;
    this.schedule(lease, increment * 1000);
  }

  /** The next path segment of every lease id under `prefix` (sys/leases/lookup LIST). */
  keysUnder(prefix: string): string[] {
    const keys = new Set<string>();
    for (const id of this.#leases.keys()) {
      if (!id.startsWith(prefix)) continue;
      const rest = id.slice(prefix.length);
      const slash = rest.indexOf('/');
      keys.add(slash < 0 ? rest : rest.slice(0, slash + 1));
    }
    return [...keys].sort();
  }

  static view(l: Lease): Record<string, unknown> {
    return {
      id: l.id,
      issue_time: new Date(l.issueTime).toISOString(),
      expire_time: new Date(l.expiresAt).toISOString(),
      last_renewal: null,
      renewable: l.renewable,
      ttl: Math.max(0, Math.round((l.expiresAt - Date.now()) / 1000)),
    };
  }

  /** At shutdown every lease goes, so no database role outlives the lab. */
  async revokeAll(sleep: (ms: number) => Promise<void>): Promise<void> {
    for (let attempt = 0; attempt < 3 && this.#leases.size; attempt++) {
      for (const id of this.ids()) await this.revoke(id).catch(() => {});
      if (this.#leases.size) await sleep(200);
    }
    for (const l of this.#leases.values()) if (l.timer) clearTimeout(l.timer);
  }
}
