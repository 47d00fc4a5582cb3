/**
 * Vault's database secrets engine with the PostgreSQL plugin: connections (`config/:name`), roles
 * (`roles/:name`) and `creds/:role`, which runs the role's creation statements in one transaction
 * against a real PostgreSQL and hands back a lease whose revocation runs the revocation statements.
 * Sources: api-docs/secret/databases/index.mdx, postgresql.mdx; plugins/database/postgresql.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { badRequest, notFound, randomAlnum, toBool, toList, toSeconds, VaultError } from './types.ts';
import type { Backend, BackendResponse, Lease, VaultRequest } from './types.ts';

export interface LeaseRegistry {
  /** Registers a lease tied to the requesting token; `revoke` runs when it is revoked or expires. */
  addLease(opts: { id: string; ttl: number; renewable: boolean; tokenId: string | null; revoke: () => Promise<void> }): Lease;
  /** The mount's default TTL when a role sets none (Vault's system default is 768 h). */
  defaultTtl: number;
  maxTtl: number;
}

interface Connection {
  plugin_name: string;
  connection_url: string;
  username: string;
  password: string;
  allowed_roles: string[];
  verify_connection: boolean;
  pool: pg.Pool;
}

interface DbRole {
  db_name: string;
  creation_statements: string[];
  revocation_statements: string[];
  rollback_statements: string[];
  renew_statements: string[];
  default_ttl: number;
  max_ttl: number;
}

/** The PostgreSQL plugin's default revocation when a role defines none (plugins/database/postgresql). */
const DEFAULT_REVOCATION = [
  `REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM "{{name}}";`,
  `REVOKE ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA public FROM "{{name}}";`,
  `REVOKE USAGE ON SCHEMA public FROM "{{name}}";`,
  `DROP ROLE IF EXISTS "{{name}}";`,
];

/** `2006-01-02 15:04:05-0700`, the plugin's expiration format. */
function expirationString(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getUTCFullYear()}-${p(d.getUTCMonth() + 1)}-${p(d.getUTCDate())} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())}+0000`;
}

/**
 * Splits each statement on `;` as the plugin does (strutil.ParseArbitraryStringSlice), except one that
 * holds a dollar-quoted body (`DO $$ … $$`), which runs whole (the plugin's containsMultilineStatement).
 */
function split(statements: string[]): string[] {
  return statements
    .flatMap((s) => (s.includes('$$') ? [s] : s.split(';')))
    .map((s) => s.trim())
    .filter(Boolean);
}

function substitute(stmt: string, vars: Record<string, string>): string {
  return stmt.replace(/\{\{\s*(\w+)\s*\}\}/g, (m, k: string) => vars[k] ?? m);
}

/** Vault's default password policy: 20 characters with at least one lower, upper and digit. */
function password(): string {
  for (;;) {
    const p = randomAlnum(20, randomBytes);
    if (/[a-z]/.test(p) && /[A-Z]/.test(p) && /\d/.test(p)) return p;
  }
}

export class DatabaseBackend implements Backend {
  readonly type = 'database';
  readonly accessor: string;
  private readonly mountPath: string;
  private readonly leases: LeaseRegistry;
  private readonly connections = new Map<string, Connection>();
  private readonly roles = new Map<string, DbRole>();
  /** Makes lease revocation fail (fault injection): the lease stays and is retried later. */
  failRevocations: () => boolean = () => false;

  constructor(mountPath: string, accessor: string, leases: LeaseRegistry) {
    this.mountPath = mountPath;
    this.accessor = accessor;
    this.leases = leases;
  }

  exists(rel: string): boolean {
    const c = /^config\/([^/]+)$/.exec(rel);
    if (c) return this.connections.has(c[1]!);
    const r = /^roles\/([^/]+)$/.exec(rel);
    if (r) return this.roles.has(r[1]!);
    return true;
  }

  async handle(req: VaultRequest, rel: string): Promise<BackendResponse | null> {
    const write = req.operation === 'update' || req.operation === 'create';
    let m = /^config\/([^/]+)$/.exec(rel);
    if (m) {
      const name = m[1]!;
      if (req.operation === 'read') {
        const c = this.connections.get(name);
        if (!c) return null;
        return {
          data: {
            plugin_name: c.plugin_name,
            allowed_roles: c.allowed_roles,
            connection_details: { connection_url: c.connection_url, username: c.username },
            verify_connection: c.verify_connection,
            password_policy: '',
            root_credentials_rotate_statements: [],
          },
        };
      }
      if (req.operation === 'delete') {
        await this.connections.get(name)?.pool.end();
        this.connections.delete(name);
        return null;
      }
      if (write) return this.writeConfig(name, req.body);
      throw new VaultError(405, 'unsupported operation');
    }
    if (rel === 'config' || rel === 'config/') {
      if (req.operation !== 'list') throw new VaultError(405, 'unsupported operation');
      if (this.connections.size === 0) throw notFound();
      return { data: { keys: [...this.connections.keys()].sort() } };
    }
    m = /^roles\/([^/]+)$/.exec(rel);
    if (m) {
      const name = m[1]!;
      if (req.operation === 'read') {
        const r = this.roles.get(name);
        return r ? { data: { ...r, credential_type: 'password' } } : null;
      }
      if (req.operation === 'delete') {
        this.roles.delete(name);
        return null;
      }
      if (write) return this.writeRole(name, req.body);
      throw new VaultError(405, 'unsupported operation');
    }
    if (rel === 'roles' || rel === 'roles/') {
      if (req.operation !== 'list') throw new VaultError(405, 'unsupported operation');
      if (this.roles.size === 0) throw notFound();
      return { data: { keys: [...this.roles.keys()].sort() } };
    }
    m = /^creds\/([^/]+)$/.exec(rel);
    if (m) {
      if (req.operation !== 'read') throw new VaultError(405, 'unsupported operation');
      return this.creds(m[1]!, req);
    }
    throw new VaultError(404, [`no handler for route "${this.mountPath}${rel}". route entry not found.`]);
  }

  private async writeConfig(name: string, body: Record<string, unknown>): Promise<BackendResponse | null> {
    const prev = this.connections.get(name);
    const plugin = typeof body['plugin_name'] === 'string' ? body['plugin_name'] : (prev?.plugin_name ?? '');
    if (!plugin) throw badRequest('empty plugin name');
    if (plugin !== 'postgresql-database-plugin') throw badRequest(`error creating database object: invalid database version: plugin "${plugin}" not found`);
    const connection_url = typeof body['connection_url'] === 'string' ? body['connection_url'] : (prev?.connection_url ?? '');
    if (!connection_url) throw badRequest('error creating database object: connection_url cannot be empty');
    const username = typeof body['username'] === 'string' ? body['username'] : (prev?.username ?? '');
    const pw = typeof body['password'] === 'string' ? body['password'] : (prev?.password ?? '');
    const url = substitute(connection_url, { username: encodeURIComponent(username), password: encodeURIComponent(pw) });
    const pool = new pg.Pool({ connectionString: url, max: 4, application_name: 'vault', idleTimeoutMillis: 5_000, connectionTimeoutMillis: 5_000 });
    pool.on('error', () => {
      /* an idle client died (server stopped): the next query reconnects */
    });
    const verify = toBool(body['verify_connection'], true);
    if (verify) {
      try {
        const c = await pool.connect();
        c.release();
      } catch {
        await pool.end();
        // The driver's own text is not copied: it may carry the connection string.
        throw badRequest('error creating database object: error verifying connection: failed to connect to the database');
      }
    }
    await prev?.pool.end();
    this.connections.set(name, {
      plugin_name: plugin,
      connection_url,
      username,
      password: pw,
      allowed_roles: 'allowed_roles' in body ? toList(body['allowed_roles']) : (prev?.allowed_roles ?? []),
      verify_connection: verify,
      pool,
    });
    return null;
  }

  private writeRole(name: string, body: Record<string, unknown>): BackendResponse | null {
    const prev = this.roles.get(name);
    const list = (k: keyof DbRole): string[] => (k in body ? toList(body[k]) : ((prev?.[k] as string[] | undefined) ?? []));
    const role: DbRole = {
      db_name: typeof body['db_name'] === 'string' ? body['db_name'] : (prev?.db_name ?? ''),
      creation_statements: list('creation_statements'),
      revocation_statements: list('revocation_statements'),
      rollback_statements: list('rollback_statements'),
      renew_statements: list('renew_statements'),
      default_ttl: 'default_ttl' in body ? toSeconds(body['default_ttl'], 'default_ttl') : (prev?.default_ttl ?? 0),
      max_ttl: 'max_ttl' in body ? toSeconds(body['max_ttl'], 'max_ttl') : (prev?.max_ttl ?? 0),
    };
    if (!role.db_name) throw badRequest('empty database name attribute');
    if (role.creation_statements.length === 0) throw badRequest('empty creation statements');
    if (role.max_ttl > 0 && role.default_ttl > role.max_ttl) throw badRequest('ttl cannot be greater than max_ttl');
    this.roles.set(name, role);
    return null;
  }

  private async creds(roleName: string, req: VaultRequest): Promise<BackendResponse> {
    const role = this.roles.get(roleName);
    if (!role) throw badRequest(`unknown role: ${roleName}`);
    const conn = this.connections.get(role.db_name);
    if (!conn) throw badRequest(`could not find DB with name: ${role.db_name}`);
    if (!conn.allowed_roles.includes('*') && !conn.allowed_roles.includes(roleName)) {
      throw badRequest(`"${roleName}" is not an allowed role`);
    }
    let ttl = role.default_ttl || this.leases.defaultTtl;
    const max = role.max_ttl || this.leases.maxTtl;
    if (max > 0 && ttl > max) ttl = max;

    // Default username template: v-{{display_name|8}}-{{role|8}}-{{random 20}}-{{unix}} truncated to 63.
    const display = (req.token?.displayName ?? 'token').slice(0, 8);
    const username = `v-${display}-${roleName.slice(0, 8)}-${randomAlnum(20, randomBytes)}-${Math.floor(Date.now() / 1000)}`.slice(0, 63);
    const pw = password();
    const expiration = expirationString(new Date(Date.now() + ttl * 1000));
    const vars = { name: username, username, password: pw, expiration };

    const client = await this.connect(conn);
    try {
      await client.query('BEGIN');
      for (const stmt of split(role.creation_statements)) await client.query(substitute(stmt, vars));
      await client.query('COMMIT');
    } catch {
      await client.query('ROLLBACK').catch(() => {});
      for (const stmt of split(role.rollback_statements)) await client.query(substitute(stmt, vars)).catch(() => {});
      // The server's text may quote the statement, which carries the password: never copied.
      throw new VaultError(500, ['1 error occurred:\n\t* failed to create the database user: a creation statement failed\n\n']);
    } finally {
      client.release();
    }

    const leaseId = `${this.mountPath}creds/${roleName}/${randomAlnum(24, randomBytes)}`;
    this.leases.addLease({
      id: leaseId,
      ttl,
      renewable: true,
      tokenId: req.token?.id ?? null,
      revoke: () => this.revokeUser(role, username),
    });
    return { lease: { id: leaseId, duration: ttl, renewable: true }, data: { username, password: pw } };
  }

  private async connect(conn: Connection): Promise<pg.PoolClient> {
    try {
      return await conn.pool.connect();
    } catch {
      throw new VaultError(500, ['1 error occurred:\n\t* failed to connect to the database\n\n']);
    }
  }

  private async revokeUser(role: DbRole, username: string): Promise<void> {
    if (this.failRevocations()) throw new Error('injected revocation failure');
    const conn = this.connections.get(role.db_name);
    if (!conn) throw new Error(`could not find DB with name: ${role.db_name}`);
    const statements = role.revocation_statements.length ? role.revocation_statements : DEFAULT_REVOCATION;
    const client = await conn.pool.connect();
    try {
      await client.query('BEGIN');
      for (const stmt of split(statements)) await client.query(substitute(stmt, { name: username, username }));
      await client.query('COMMIT');
    } catch (e) {
      await client.query('ROLLBACK').catch(() => {});
      throw e;
    } finally {
      client.release();
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.connections.values()].map((c) => c.pool.end().catch(() => {})));
    this.connections.clear();
  }
}
