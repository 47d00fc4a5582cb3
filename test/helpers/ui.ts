/**
 * Test helpers for the UI: a Chromium launcher (Debian's browser through playwright-core, a fresh
 * profile per launch), a one-time renderer build, and an in-memory app fixture implementing the UI
 * contract (named as a fixture: it stands in for the core when a test is about the UI or its host).
 */
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';
import type { AuditRecord, AuditRecordInput } from '../../common/audit-record.ts';
import { AuditRecordInputSchema } from '../../common/audit-record.ts';
import { AppError } from '../../common/errors.ts';
import type { AuditStore } from '../../main/core/audit/store.ts';
import { exportFilename, exportLines, EXPORT_MEDIA_TYPES } from '../../main/core/audit/export.ts';
import { auditPage } from '../../main/core/audit/timeline-page.ts';
import type { SecretStore } from '../../main/core/ports.ts';
import type {
  AuditFilter,
  CachedApproval,
  ContractHandlers,
  EventName,
  EventOf,
  EventSubscribe,
  PendingApproval,
  Status,
} from '../../common/contract.ts';

import { CHROMIUM_ARGS, CHROMIUM_PATH } from './browser.ts';

export const REPO_ROOT = resolve(import.meta.dirname, '../..');
export const SCREENSHOT_DIR = join(REPO_ROOT, 'test-results', 'screenshots');

export { CHROMIUM_ARGS };

export interface Browser {
  context: BrowserContext;
  /** The Chromium profile (History, cookies, caches: SQLite and LevelDB files), kept until `close()`. */
  profileDir: string;
  /** Closes Chromium and keeps its profile, so a test can read what it left there. */
  stop(): Promise<void>;
  /** Closes Chromium and removes its profile. Safe to call after `stop()`. */
  close(): Promise<void>;
}

/** Chromium with a fresh profile directory, removed on close. */
export async function launchBrowser(options: { colorScheme?: 'light' | 'dark'; acceptDownloads?: boolean } = {}): Promise<Browser> {
  const dir = await mkdtemp(join(tmpdir(), 'countersign-chromium-'));
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM_PATH,
    args: CHROMIUM_ARGS,
    headless: true,
    viewport: { width: 1280, height: 800 },
    colorScheme: options.colorScheme ?? 'light',
    acceptDownloads: options.acceptDownloads ?? false,
  });
  return {
    context,
    profileDir: dir,
    stop: () => context.close(),
    async close() {
      await context.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Builds the renderer once into a temporary directory (removed by the returned dispose). */
export async function buildRenderer(): Promise<{ dir: string; dispose(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'countersign-renderer-'));
  const { build } = await import('vite');
  await build({
    configFile: join(REPO_ROOT, 'renderer', 'vite.config.ts'),
    logLevel: 'error',
    build: { outDir: dir, emptyOutDir: true },
  });
  return { dir, dispose: () => rm(dir, { recursive: true, force: true }) };
}

export async function screenshotPath(name: string): Promise<string> {
  await mkdir(SCREENSHOT_DIR, { recursive: true });
  return join(SCREENSHOT_DIR, `${name}.png`);
}

type Listener = (payload: unknown) => void;

export interface FixtureApp {
  handlers: ContractHandlers;
  events: EventSubscribe;
  emit<E extends EventName>(event: E, payload: EventOf<E>): void;
  append(input: AuditRecordInput): AuditRecord;
  records: AuditRecord[];
  pending: PendingApproval[];
  cached: CachedApproval[];
  decisions: { id: string; decision: 'approve' | 'deny'; digest?: string }[];
  status: Status;
  listenerCount(): number;
}

function matches(record: AuditRecord, filter: AuditFilter): boolean {
  if (filter.outcome?.length && !filter.outcome.includes(record.outcome)) return false;
  if (filter.kind?.length && !filter.kind.includes(record.kind)) return false;
  if (filter.tier?.length && (record.tier === undefined || !filter.tier.includes(record.tier))) return false;
  if (filter.tool && record.tool !== filter.tool) return false;
  if (filter.user) {
    const u = record.user;
    const needle = filter.user.toLowerCase();
    if (!u || ![u.sub, u.name, u.email].some((v) => v?.toLowerCase().includes(needle))) return false;
  }
  if (filter.from && record.at < filter.from) return false;
  if (filter.to && record.at > filter.to) return false;
  if (filter.search) {
    const needle = filter.search.toLowerCase();
    const hay = [record.tool, record.target, record.summary, record.error?.message, ...Object.values(record.keys).map(String)]
      .filter(Boolean)
      .join(' ')
      .toLowerCase();
    if (!hay.includes(needle)) return false;
  }
  return true;
}

/**
 * An in-memory stand-in for the core behind the UI contract (a fixture, not the app): a hash-chained
 * record list, pending and cached approvals, and a status, with events pushed as they change.
 */
export function createFixtureApp(options: { demo?: boolean } = {}): FixtureApp {
  const listeners = new Map<EventName, Set<Listener>>();
  const records: AuditRecord[] = [];
  const pending: PendingApproval[] = [];
  const cached: CachedApproval[] = [];
  const decisions: FixtureApp['decisions'] = [];
  const status: Status = {
    host: 'headless',
    version: '0.1.0',
    demo: options.demo ?? true,
    user: { sub: 'alice', name: 'Alice Example', email: 'alice@clinic.example' },
    session: { state: 'signed_in', persistent: true },
    idp: { issuer: 'http://127.0.0.1:4000/oidc', state: 'ok', delegation: 'rar' },
    vault: { address: 'http://127.0.0.1:8200', state: 'ok', initialized: true, sealed: false, version: '1.21.0' },
    claudeDesktop: { configured: true, connected: true },
    bridgeSessions: [{ id: 's-1', clientName: 'claude-ai', clientVersion: '0.1.0', pid: 4242, connectedAt: new Date(0).toISOString(), calls: 3 }],
    pendingApprovals: 0,
    calls: 3,
  };

  const emit = <E extends EventName>(event: E, payload: EventOf<E>): void => {
    for (const l of listeners.get(event) ?? []) l(payload);
  };

  const append = (input: AuditRecordInput): AuditRecord => {
    const parsed = AuditRecordInputSchema.parse(input);
    const prev = records.at(-1);
    const seq = (prev?.seq ?? 0) + 1;
    const at = new Date(Date.UTC(2026, 10, 1) + seq * 1000).toISOString();
    const prev_hash = prev?.hash ?? '0'.repeat(64);
    const hash = createHash('sha256').update(prev_hash).update(JSON.stringify({ ...parsed, seq, at })).digest('hex');
    const record: AuditRecord = { ...parsed, seq, at, prev_hash, hash };
    records.push(record);
    emit('audit.appended', record);
    return record;
  };

  const snapshot = () => ({ pending: [...pending], cached: [...cached] });

  const handlers: ContractHandlers = {
    'status.get': async () => ({ ...status, pendingApprovals: pending.length }),
    'session.signIn': async () => {
      status.user = { sub: 'alice', name: 'Alice Example', email: 'alice@clinic.example' };
      emit('status.changed', { ...status });
      return { user: status.user };
    },
    'session.signOut': async () => {
      status.user = null;
      emit('status.changed', { ...status });
      return { ok: true as const };
    },
    'audit.page': async ({ filter, before, offset, limit }) => {
      const head = records.at(-1)?.seq ?? 0;
      const all: AuditRecord[] = [];
      for (let i = records.length - 1; i >= 0; i--) {
        const r = records[i]!;
        if (before !== undefined && r.seq >= before) continue;
        if (matches(r, filter)) all.push(r);
      }
      return { records: all.slice(offset, offset + limit), total: all.length, total_capped: false, head };
    },
    'audit.get': async ({ seq }) => {
      const r = records.find((x) => x.seq === seq);
      if (!r) throw new AppError('NOT_FOUND', `No record ${seq}.`);
      return r;
    },
    'audit.verify': async () => {
      let prev = '0'.repeat(64);
      for (const r of records) {
        const { seq, at, prev_hash, hash, ...input } = r;
        const expected = createHash('sha256').update(prev).update(JSON.stringify({ ...input, seq, at })).digest('hex');
        if (prev_hash !== prev || hash !== expected) {
          return { ok: false, checked: records.length, firstBad: { seq, reason: 'hash mismatch' }, anchored: false, verifiedAt: new Date().toISOString() };
        }
        prev = hash;
      }
      return { ok: true, checked: records.length, firstBad: null, anchored: false, verifiedAt: new Date().toISOString() };
    },
    // the desktop app's save dialog export: not served by the web host this fixture stands behind
    'audit.saveExport': async () => ({ saved: false as const }),
    'audit.export': async ({ format, filter }) => {
      const rows = records.filter((r) => matches(r, filter));
      if (format === 'jsonl') {
        return { filename: 'countersign-audit.jsonl', mediaType: 'application/x-ndjson', content: rows.map((r) => JSON.stringify(r)).join('\n') + '\n' };
      }
      const head = 'seq,at,kind,outcome,tool,tier,user';
      const csv = rows.map((r) => [r.seq, r.at, r.kind, r.outcome, r.tool ?? '', r.tier ?? '', r.user?.sub ?? ''].join(','));
      return { filename: 'countersign-audit.csv', mediaType: 'text/csv', content: [head, ...csv].join('\n') + '\n' };
    },
    'approvals.pending': async () => [...pending],
    'approvals.decide': async ({ id, decision, digest }) => {
      const i = pending.findIndex((p) => p.id === id);
      if (i < 0) throw new AppError('NOT_FOUND', 'That approval is no longer pending.');
      if (pending[i]!.digest !== digest) throw new AppError('INPUT_INVALID', 'The call changed since it was shown.');
      pending.splice(i, 1);
      decisions.push({ id, decision, digest });
      emit('approvals.changed', snapshot());
      return { ok: true as const };
    },
    'approvals.deny': async ({ id }) => {
      const i = pending.findIndex((p) => p.id === id);
      if (i < 0) throw new AppError('NOT_FOUND', 'That approval is no longer pending.');
      pending.splice(i, 1);
      decisions.push({ id, decision: 'deny' });
      emit('approvals.changed', snapshot());
      return { ok: true as const };
    },
    'approvals.cached': async () => [...cached],
    'approvals.revoke': async ({ id }) => {
      const i = cached.findIndex((c) => c.id === id);
      if (i < 0) throw new AppError('NOT_FOUND', 'That approval has already ended.');
      cached.splice(i, 1);
      emit('approvals.changed', snapshot());
      return { ok: true as const };
    },
    'settings.get': async () => ({
      idp: { issuer: status.idp.issuer, clientId: 'countersign-desktop', scopes: ['openid', 'profile', 'email', 'offline_access'], dpop: true },
      vault: { address: status.vault.address, authMount: 'jwt', roles: ['clinic-read', 'clinic-write'] },
      policy: { path: '/home/alice/.config/countersign/policy.jsonc', text: '{\n  // tier per statement class\n  "tables": { "appointments": { "write": 2 } }\n}\n' },
      claudeDesktop: { configPath: '/home/alice/.config/Claude/claude_desktop_config.json', configured: status.claudeDesktop.configured },
      dataDir: '/home/alice/.local/share/countersign',
      demo: status.demo,
    }),
    'claude.connect': async () => {
      status.claudeDesktop = { configured: true, connected: false };
      emit('status.changed', { ...status });
      return { configured: true, configPath: '/home/alice/.config/Claude/claude_desktop_config.json', message: 'Restart Claude Desktop to load Countersign.' };
    },
    // This scripted app is configured: the setup channels refuse as the real core's do.
    'setup.get': configured,
    'setup.discover': configured,
    'setup.check': configured,
    'setup.save': configured,
    'settings.config': configured,
    'settings.save': configured,
  };

  const events: EventSubscribe = (event, listener) => {
    let set = listeners.get(event);
    if (!set) listeners.set(event, (set = new Set()));
    set.add(listener as Listener);
    return () => set.delete(listener as Listener);
  };

  return {
    handlers,
    events,
    emit,
    append,
    records,
    pending,
    cached,
    decisions,
    status,
    listenerCount: () => [...listeners.values()].reduce((n, s) => n + s.size, 0),
  };
}

/** A tool-call record like the broker writes, varied by `i`. */
export function sampleToolCall(i: number, overrides: Partial<AuditRecordInput> = {}): AuditRecordInput {
  const outcomes = ['success', 'success', 'success', 'denied', 'error'] as const;
  const tools = ['query', 'update_appointment', 'list_patients', 'delete_user'] as const;
  const tier = ((i % 4) + 1) as 1 | 2 | 3 | 4;
  return {
    kind: 'tool_call',
    outcome: outcomes[i % outcomes.length]!,
    user: { sub: i % 7 === 0 ? 'bob' : 'alice', name: i % 7 === 0 ? 'Bob Example' : 'Alice Example' },
    client: { name: 'claude-ai', version: '0.1.0', pid: 4242 },
    tool: tools[i % tools.length]!,
    tier,
    target: 'postgres://lab/clinic',
    authorization_details: [{ type: 'postgres', actions: ['SELECT'], locations: ['postgres://lab/clinic'], tables: ['appointments'] }],
    args: { sql: `SELECT * FROM appointments WHERE id = ${i}` },
    hops: [
      { name: 'validate', outcome: 'ok', ms: 0.4 },
      { name: 'classify', outcome: 'ok', ms: 1.2 },
      { name: 'approval', outcome: tier >= 2 ? 'ok' : 'skipped', ms: tier >= 2 ? 2400 : 0 },
      { name: 'exchange', outcome: 'ok', ms: 6.1 },
      { name: 'vault_login', outcome: 'ok', ms: 3.3 },
      { name: 'vault_creds', outcome: 'ok', ms: 21.5 },
      { name: 'execute', outcome: i % 5 === 4 ? 'error' : 'ok', ms: 8.7, ...(i % 5 === 4 ? { code: 'DB_PERMISSION_DENIED' } : {}) },
      { name: 'revoke', outcome: 'ok', ms: 4.2 },
      { name: 'revoke_check', outcome: 'ok', ms: 1.1 },
    ],
    keys: {
      mcp_request_id: i,
      mcp_session_id: 's-1',
      obo_jti: `jti-${i.toString(16).padStart(8, '0')}`,
      vault_request_id: `req-${i}`,
      vault_accessor: `acc-${i}`,
      lease_id: `database/creds/clinic-read/lease-${i}`,
      db_role: `v-jwt-clinic-read-${i}`,
    },
    ...(i % 5 === 4 ? { error: { code: 'DB_PERMISSION_DENIED', message: 'The database refused the statement for this role.' } } : {}),
    summary: `call ${i}`,
    demo: true,
    duration_ms: 50 + (i % 17),
    ...overrides,
  };
}

/** A SecretStore held in memory (stands in for the OS keychain, which tests of the UI do not need). */
/** A SecretStore in memory; `values()` lets a test plant what the app kept in it and look for it elsewhere. */
export function memorySecrets(): SecretStore & { values(): string[] } {
  const m = new Map<string, string>();
  return {
    values: () => [...m.values()],
    kind: 'memory',
    get: async (k) => m.get(k) ?? null,
    set: async (k, v) => void m.set(k, v),
    delete: async (k) => void m.delete(k),
  };
}

/**
 * Puts a real AuditStore behind the fixture's audit channels: pages, records, verification and
 * export come from SQLite, and appends reach the UI as `audit.appended` events. Returns the unsubscribe.
 */
export function backWithStore(app: FixtureApp, store: AuditStore): () => void {
  app.handlers['audit.page'] = async (request) => auditPage(store, request);
  app.handlers['audit.get'] = async ({ seq }) => {
    const r = store.get(seq);
    if (!r) throw new AppError('NOT_FOUND', `No record ${seq}.`);
    return r;
  };
  app.handlers['audit.verify'] = async () => store.verify();
  app.handlers['audit.export'] = async ({ format, filter }) => ({
    filename: exportFilename(format),
    mediaType: EXPORT_MEDIA_TYPES[format],
    content: [...exportLines(store, format, filter)].join(''),
  });
  return store.onAppend((record) => app.emit('audit.appended', record));
}

async function configured(): Promise<never> {
  throw new AppError('CONFIG_INVALID', 'Countersign is already configured: change its configuration file and restart it.');
}
