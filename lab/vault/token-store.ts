/**
 * The token store, as Vault's (vault/token_store.go): tokens and their accessors, TTLs that revoke a
 * token when they run out, revocation that takes the token's leases with it, and the `auth/token/`
 * endpoints (lookup, renew, revoke, create).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type { ExpirationManager } from './expiration.ts';
import type { TokenIssuer } from './jwt-auth.ts';
import { badRequest, randomAlnum, toBool, toList, toSeconds, VaultError } from './types.ts';
import type { AuthBlock, BackendResponse, Token, VaultRequest } from './types.ts';

/** Vault's system default token and lease TTL (32 days). */
export const SYSTEM_DEFAULT_TTL = 768 * 3600;

const bytes = (n: number): Uint8Array => randomBytes(n);
const now = (): number => Math.floor(Date.now() / 1000);

export class TokenStore {
  readonly #tokens = new Map<string, Token>();
  readonly #accessors = new Map<string, string>();
  /** Set once the expiration manager exists (it needs the store to find a lease's token). */
  expiration!: ExpirationManager;

  get(id: string): Token | undefined {
    return this.#tokens.get(id);
  }

  values(): IterableIterator<Token> {
    return this.#tokens.values();
  }

  /** The root token `vault server -dev` prints: never expires. */
  addRoot(id: string): void {
    this.#add({
      id,
      accessor: randomAlnum(24, bytes),
      policies: ['root'],
      meta: null,
      displayName: 'root',
      path: 'auth/token/root',
      entityId: '',
      creationTime: now(),
      creationTtl: 0,
      expiresAt: null,
      numUses: 0,
      orphan: true,
      leases: new Set(),
    });
  }

  #add(t: Token): void {
    this.#tokens.set(t.id, t);
    this.#accessors.set(t.accessor, t.id);
    if (t.expiresAt !== null) this.#expireIn(t, t.expiresAt - Date.now());
  }

  #expireIn(t: Token, ms: number): void {
    if (t.timer) clearTimeout(t.timer);
    t.timer = setTimeout(() => void this.revoke(t).catch(() => {}), Math.max(0, ms));
    t.timer.unref();
  }

  /** A new service token for a login or `auth/token/create`; `default` is added unless refused. */
  readonly issue: TokenIssuer['issueToken'] = (o) => {
    let ttl = o.ttl > 0 ? o.ttl : SYSTEM_DEFAULT_TTL;
    if (o.maxTtl > 0 && ttl > o.maxTtl) ttl = o.maxTtl;
    const set = new Set(o.policies.filter((p) => p && p !== 'root'));
    if (!o.noDefaultPolicy) set.add('default');
    const t: Token = {
      id: `hvs.${randomAlnum(24, bytes)}`,
      accessor: randomAlnum(24, bytes),
      policies: [...set].sort(),
      meta: o.meta,
      displayName: o.displayName,
      path: o.path,
      entityId: randomUUID(),
      creationTime: now(),
      creationTtl: ttl,
      expiresAt: Date.now() + ttl * 1000,
      numUses: o.numUses,
      orphan: true,
      leases: new Set(),
    };
    this.#add(t);
    return { ...authOf(t, ttl), metadata: o.meta };
  };

  /** Revokes the token and every lease it created (api-docs/auth/token "Revoke a Token (Self)"). */
  async revoke(t: Token): Promise<void> {
    this.#tokens.delete(t.id);
    this.#accessors.delete(t.accessor);
    if (t.timer) clearTimeout(t.timer);
    const failed: string[] = [];
    for (const id of [...t.leases]) {
      try {
        await this.expiration.revoke(id);
      } catch {
        failed.push(id);
        this.expiration.retrySoon(id);
      }
    }
    if (failed.length) {
      throw new VaultError(500, [`1 error occurred:\n\t* failed to revoke token: failed to revoke ${failed.length} lease(s) of the token\n\n`]);
    }
  }

  /** `auth/token/<rel>`. */
  async handle(req: VaultRequest, rel: string): Promise<BackendResponse | null> {
    const op = req.operation;
    const write = op === 'update' || op === 'create';
    const self = req.token!;
    const byBody = (): Token => {
      const t = this.#tokens.get(String(req.body['token'] ?? ''));
      if (!t) throw badRequest('bad token');
      return t;
    };
    const byAccessor = (): Token => {
      const id = this.#accessors.get(String(req.body['accessor'] ?? ''));
      const t = id ? this.#tokens.get(id) : undefined;
      if (!t) throw badRequest('invalid accessor');
      return t;
    };
    switch (rel) {
      case 'lookup-self':
        if (op === 'read' || write) return { data: tokenView(self) };
        break;
      case 'revoke-self':
        if (write) {
          await this.revoke(self);
          return null;
        }
        break;
      case 'renew-self':
        if (write) {
          if (self.expiresAt === null || self.oauth) throw badRequest('token is not renewable');
          const inc = toSeconds(req.body['increment'], 'increment') || self.creationTtl;
          self.expiresAt = Date.now() + inc * 1000;
          this.#expireIn(self, inc * 1000);
          return { auth: authOf(self, inc) };
        }
        break;
      case 'lookup':
        if (write) return { data: tokenView(byBody()) };
        break;
      case 'lookup-accessor':
        if (write) return { data: { ...tokenView(byAccessor()), id: '' } };
        break;
      case 'revoke':
        if (write) {
          await this.revoke(byBody());
          return null;
        }
        break;
      case 'revoke-accessor':
        if (write) {
          await this.revoke(byAccessor());
          return null;
        }
        break;
      case 'create':
      case 'create-orphan':
        if (write) {
          const requested = toList(req.body['policies']);
          const isRoot = self.policies.includes('root');
          if (!isRoot && requested.some((p) => !self.policies.includes(p))) throw badRequest('child policies must be subset of parent');
          const metaRaw = req.body['meta'];
          const meta = metaRaw && typeof metaRaw === 'object' ? Object.fromEntries(Object.entries(metaRaw).map(([k, v]) => [k, String(v)])) : {};
          const auth = this.issue({
            policies: requested.length ? requested : self.policies,
            noDefaultPolicy: toBool(req.body['no_default_policy'], false),
            meta,
            displayName: `token${req.body['display_name'] ? `-${String(req.body['display_name'])}` : ''}`,
            path: 'auth/token/create',
            ttl: toSeconds(req.body['ttl'], 'ttl'),
            maxTtl: toSeconds(req.body['explicit_max_ttl'], 'explicit_max_ttl'),
            numUses: Number(req.body['num_uses'] ?? 0) || 0,
          });
          return { auth };
        }
        break;
      default:
        throw new VaultError(404, [`no handler for route "auth/token/${rel}". route entry not found.`]);
    }
    throw new VaultError(405, 'unsupported operation');
  }
}

function authOf(t: Token, ttl: number): AuthBlock {
  return {
    client_token: t.id,
    accessor: t.accessor,
    policies: t.policies,
    token_policies: t.policies,
    identity_policies: null,
    metadata: t.meta ?? {},
    lease_duration: ttl,
    renewable: true,
    entity_id: t.entityId,
    token_type: 'service',
    orphan: t.orphan,
    mfa_requirement: null,
    num_uses: t.numUses,
  };
}

function tokenView(t: Token): Record<string, unknown> {
  const ttl = t.expiresAt === null ? 0 : Math.max(0, Math.round((t.expiresAt - Date.now()) / 1000));
  return {
    accessor: t.accessor,
    creation_time: t.creationTime,
    creation_ttl: t.creationTtl,
    display_name: t.displayName,
    entity_id: t.entityId,
    expire_time: t.expiresAt === null ? null : new Date(t.expiresAt).toISOString(),
    explicit_max_ttl: 0,
    id: t.id,
    issue_time: new Date(t.creationTime * 1000).toISOString(),
    meta: t.meta,
    num_uses: t.numUses,
    orphan: t.orphan,
    path: t.path,
    policies: t.policies,
    renewable: t.expiresAt !== null && !t.oauth,
    ttl,
    type: 'service',
  };
}
