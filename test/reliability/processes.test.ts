/**
 * Processes dying and what they leave: the whole core runs in a child process (fixtures/core-child.ts)
 * behind real bridges (the bundled bridge, spawned as Claude Desktop spawns it). A bridge killed with
 * SIGKILL mid-call; a realistic session whose every artifact is scanned for planted secrets; the core
 * killed with SIGKILL mid-call and started again on the same data directory.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resolvePaths } from '../../common/paths.ts';
import { AuditStore } from '../../main/core/audit/store.ts';
import { exportLines } from '../../main/core/audit/export.ts';
import { JOURNAL_FILE } from '../../main/core/audit/journal.ts';
import { decodeJwt } from '../lab/idp-fixtures.ts';
import { artifactBytes, describeHits, scanForSecrets, type Artifact } from '../helpers/secret-scan.ts';
import { DEMO_POLICY_FILE, faultLedger, LONG, reportCounters, startReliabilityLab, type ReliabilityLab } from './harness.ts';
import { compareIds, requestIdCounts } from './process-faults.ts';
import { INITIALIZE, lineClient, startRecordingProxy, toolCall, type Json, type LineClient, type RecordingProxy } from './wire.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/core-child.ts', import.meta.url));

let r: ReliabilityLab;
let vaultTap: RecordingProxy;
let work: string;
let home: string;
let bridgePath: string;
let core: ChildProcess | undefined;
const coreStderr: string[] = [];
const bridgeStderr: string[] = [];
const bridges = new Set<ChildProcess>();
const ledger = faultLedger();

const paths = () => resolvePaths({ platform: process.platform, env: { COUNTERSIGN_HOME: home }, home });

/** A core child on `home` (another home and configuration file for the agent-mode core). */
async function startCoreChild(o: { home?: string; configFile?: string } = {}): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CHILD], {
    env: {
      ...process.env,
      CS_CORE_CHILD: JSON.stringify({ home: o.home ?? home, configFile: o.configFile ?? join(work, 'config.json'), accessToken: r.alice.accessToken, sub: String(decodeJwt(r.alice.accessToken).sub) }),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr!.on('data', (c: Buffer) => coreStderr.push(c.toString('utf8')));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`the core did not start: ${coreStderr.join('').slice(-2000)}`)), 30_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString('utf8');
      if (out.includes('ready ')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the core exited with ${code}: ${coreStderr.join('').slice(-2000)}`));
    });
  });
  return child;
}

function killed(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

async function startBridgeChild(at: string = home): Promise<{ child: ChildProcess; client: LineClient }> {
  const child = spawn(process.execPath, [bridgePath], {
    env: { PATH: process.env.PATH ?? '', HOME: at, COUNTERSIGN_HOME: at, COUNTERSIGN_APP_CMD: '[]', COUNTERSIGN_APP_WAIT_MS: '15000' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  bridges.add(child);
  child.once('exit', () => bridges.delete(child));
  child.stderr!.on('data', (c: Buffer) => bridgeStderr.push(c.toString('utf8')));
  const client = lineClient(child.stdout!, child.stdin!);
  const init = await client.request(INITIALIZE('init'));
  expect(init.result).toBeTruthy();
  client.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  return { child, client };
}

const resultText = (m: Json): string => {
  const r = m.result as { content?: Array<{ text?: string }>; isError?: boolean } | undefined;
  if (r) return (r.content ?? []).map((c) => c.text ?? '').join('\n');
  return JSON.stringify(m.error ?? m);
};
const isToolError = (m: Json): boolean => 'error' in m || (m.result as { isError?: boolean } | undefined)?.isError === true;

/** Waits until a per-call role is running a statement (the call is past exchange, Vault and connect). */
async function untilStatementRuns(client: LineClient, withinMs = 10_000): Promise<string> {
  const deadline = Date.now() + withinMs;
  const seen: string[] = [];
  for (;;) {
    const rows = await r.admin<{ usename: string; state: string; query: string }>("SELECT usename, state, query FROM pg_stat_activity WHERE usename LIKE 'v-%'");
    seen.push(...rows.map((x) => `${x.state}: ${x.query}`));
    const running = rows.find((x) => x.state === 'active');
    if (running) return running.usename;
    if (Date.now() > deadline) throw new Error(`no per-call role ever ran the statement (seen: ${[...new Set(seen)].join(' | ')}); the client got: ${client.received.join('\n').slice(-1500)}; core: ${coreStderr.join('').slice(-1500)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Waits until each of `ids` is in the core's in-flight journal or its audit store. */
async function reachedCore(ids: string[], withinMs: number): Promise<void> {
  const { DatabaseSync } = await import('node:sqlite');
  const deadline = Date.now() + withinMs;
  for (;;) {
    const seen = new Set<unknown>();
    try {
      const db = new DatabaseSync(join(paths().dataDir, JOURNAL_FILE), { readOnly: true });
      try {
        for (const row of db.prepare('SELECT body FROM calls').all() as Array<{ body: string }>) seen.add((JSON.parse(row.body) as { keys?: { mcp_request_id?: unknown } }).keys?.mcp_request_id);
      } finally {
        db.close();
      }
    } catch {
      // not created yet, or busy: looked at again
    }
    const missing = ids.filter((id) => !seen.has(id));
    if (missing.length === 0) return;
    const counts = await withAudit((store) => requestIdCounts(store));
    if (missing.every((id) => counts.has(id))) return;
    if (Date.now() > deadline) throw new Error(`calls never reached the core: ${missing.filter((id) => !counts.has(id)).join(', ')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function withAudit<T>(read: (store: AuditStore) => T | Promise<T>, dataDir = paths().dataDir): Promise<T> {
  const store = await AuditStore.open({ dataDir, readOnly: true });
  try {
    return await read(store);
  } finally {
    await store.close();
  }
}

async function recordsFor(requestId: string | number, withinMs = 10_000, dataDir = paths().dataDir) {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const found = await withAudit((s) => s.page({ limit: 200 }).records.filter((rec) => rec.kind === 'tool_call' && rec.keys.mcp_request_id === requestId), dataDir);
    if (found.length > 0 || Date.now() > deadline) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  r = await startReliabilityLab();
  vaultTap = await startRecordingProxy(r.lab.vaultAddr);
  work = await mkdtemp(join(tmpdir(), 'countersign-processes-'));
  home = join(work, 'home');
  bridgePath = join(work, 'bridge.mjs');
  execFileSync(process.execPath, [join(ROOT, 'scripts/build-bridge.mjs'), '--outfile', bridgePath], { stdio: 'pipe' });
  await writeFile(
    join(work, 'config.json'),
    JSON.stringify({
      idp: { issuer: r.lab.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true },
      vault: { address: vaultTap.url, timeoutMs: 5_000, allowInsecureHttpForLoopbackOnly: true },
      policyFile: DEMO_POLICY_FILE,
      postgres: r.connection,
      demo: true,
    }),
  );
  core = await startCoreChild();
}, 90_000);

afterAll(async () => {
  await reportCounters('processes', { faults: ledger.outcomes() });
  for (const b of bridges) await killed(b);
  if (core) await killed(core);
  await vaultTap?.stop();
  await r?.stop();
  if (work) await rm(work, { recursive: true, force: true });
}, 60_000);

describe('the bridge killed mid-call', () => {
  it('does not stop the call: it finishes, is recorded once, revokes its credential, and the next bridge works', async () => {
    await ledger.run('bridge killed with SIGKILL mid-call', 'process', async () => {
    const { child, client } = await startBridgeChild();
    client.send(toolCall('slow-1', 'query', { sql: 'SELECT pg_sleep(2), id FROM patients WHERE id = 1' }));
    await untilStatementRuns(client);
    await killed(child);

    const records = await recordsFor('slow-1');
    expect(records).toHaveLength(1);
    expect(['success', 'cancelled']).toContain(records[0]!.outcome);
    expect(await r.settled(8_000)).toEqual({ roles: [], leases: 0 });
    expect(core!.exitCode).toBeNull();

    const next = await startBridgeChild();
    const answer = await next.client.request(toolCall('after-1', 'query', { sql: 'SELECT count(*)::int AS n FROM patients' }));
    expect(isToolError(answer), resultText(answer)).toBe(false);
    await killed(next.child);
    });
  });
});

describe('a realistic session, then every artifact scanned for planted secrets', () => {
  it('finds no token, OBO, Vault token, password or key in any log, store, export, stderr or MCP answer', async () => {
    const { child, client } = await startBridgeChild();
    const answers: Json[] = [];
    for (const [i, args] of [
      { sql: 'SELECT id, full_name FROM patients ORDER BY id' },
      { sql: 'SELECT count(*)::int AS n FROM appointments WHERE status = $1', params: ['scheduled'] },
      { sql: 'SELECT id, body FROM notes ORDER BY id LIMIT 2' },
    ].entries()) {
      answers.push(await client.request(toolCall(`s-${i}`, 'query', args)));
    }
    answers.push(await client.request(toolCall('s-list', 'list_tables', {})));
    answers.push(await client.request(toolCall('s-desc', 'describe_table', { table: 'appointments' })));
    // Errors: one refused at the database with a live credential, one refused before any exchange.
    const denied = await client.request(toolCall('s-err', 'query', { sql: 'SELECT rolpassword FROM pg_authid' }));
    expect(isToolError(denied), resultText(denied)).toBe(true);
    const blocked = await client.request(toolCall('s-drop', 'execute', { sql: 'DROP TABLE notes' }));
    expect(resultText(blocked)).toContain('POLICY_BLOCKED');
    for (const a of answers) expect(isToolError(a), resultText(a)).toBe(false);
    await killed(child);
    expect(await r.settled(8_000)).toEqual({ roles: [], leases: 0 });

    // What the core in the other process held, learned from the wire between it and Vault.
    const planted: Record<string, string> = {
      user_access_token: r.alice.accessToken,
      ...(r.alice.refreshToken ? { user_refresh_token: r.alice.refreshToken } : {}),
      ...(r.alice.idToken ? { user_id_token: r.alice.idToken } : {}),
      vault_root_token: r.lab.vaultToken,
      vault_unseal_key: r.lab.vault.unsealKey,
      pg_management_password: r.lab.pg.managementPassword,
      pg_admin_password: decodeURIComponent(new URL(r.lab.postgresAdminUrl).password),
    };
    let obos = 0;
    let passwords = 0;
    for (const x of vaultTap.exchanges) {
      if (/\/auth\/[^/]+\/login$/.test(x.path)) {
        planted[`obo_${++obos}`] = (JSON.parse(x.request) as { jwt: string }).jwt;
        const token = (JSON.parse(x.response) as { auth?: { client_token?: string } }).auth?.client_token;
        if (token) planted[`vault_token_${obos}`] = token;
      }
      const password = (JSON.parse(x.response || '{}') as { data?: { password?: unknown } }).data?.password;
      if (typeof password === 'string') planted[`db_password_${++passwords}`] = password;
    }
    expect(obos).toBeGreaterThanOrEqual(6);
    expect(passwords).toBeGreaterThanOrEqual(6);

    const exports = await withAudit((s) => ({ jsonl: [...exportLines(s, 'jsonl')].join(''), csv: [...exportLines(s, 'csv')].join('') }));
    expect(exports.jsonl).toContain('s-err');
    const artifacts: Artifact[] = [
      { kind: 'text', name: 'core stderr', text: coreStderr.join('') },
      { kind: 'text', name: 'bridge stderr', text: bridgeStderr.join('') },
      { kind: 'text', name: 'MCP answers', text: client.received.join('\n') },
      { kind: 'text', name: 'lab log (IdP, Vault stand-in, PostgreSQL)', text: r.logs.lab.join('\n') },
      { kind: 'file', path: r.lab.vaultAuditLogPath },
      { kind: 'file', path: r.lab.pg.logFile },
      { kind: 'dir', path: paths().dataDir },
      { kind: 'text', name: 'export.jsonl', text: exports.jsonl },
      { kind: 'text', name: 'export.csv', text: exports.csv },
    ];
    const hits = await scanForSecrets(planted, artifacts);
    const scanned = await artifactBytes(artifacts);
    expect(scanned).toBeGreaterThan(50_000);
    await reportCounters('secrets', {}, { secrets_planted: Object.keys(planted).length, artifact_bytes_scanned: scanned, secret_hits: hits.length });
    expect(hits, describeHits(hits)).toEqual([]);
  });
});

describe('the core killed mid-call and started again', () => {
  let requestId = 'doomed-1';
  let role = '';

  it('killed between mint and revoke: answers the in-flight call with an error, the restarted core revokes the credential at once, and serves the same bridge', async () => {
    await ledger.run('core killed with SIGKILL between mint and revoke', 'process', async () => {
    const { child, client } = await startBridgeChild();
    requestId = 'doomed-1';
    client.send(toolCall(requestId, 'query', { sql: 'SELECT pg_sleep(3), id FROM patients WHERE id = 1' }));
    role = await untilStatementRuns(client);
    await killed(core!);

    const answer = await client.response(requestId, 10_000);
    expect(isToolError(answer)).toBe(true);
    expect(resultText(answer).length).toBeGreaterThan(20);

    // The credential outlives the core, but not its TTL: the role is VALID UNTIL at most 60 s out, and
    // Vault holds its lease with the same bound.
    const valid = await r.admin<{ until: Date | null }>('SELECT rolvaliduntil AS until FROM pg_roles WHERE rolname = $1', [role]);
    if (valid.length > 0) expect(valid[0]!.until!.getTime() - Date.now()).toBeLessThanOrEqual(61_000);
    for (const id of r.lab.vault.leaseIds()) {
      const res = await fetch(`${r.lab.vaultAddr}/v1/sys/leases/lookup`, {
        method: 'PUT',
        headers: { 'x-vault-token': r.lab.vaultToken, 'content-type': 'application/json' },
        body: JSON.stringify({ lease_id: id }),
      });
      const ttl = ((await res.json()) as { data: { ttl: number } }).data.ttl;
      expect(ttl).toBeLessThanOrEqual(60);
    }

    core = await startCoreChild();
    // The journal held the call's Vault token sealed: the restart revoked it, long before its TTL.
    expect(await r.settled(8_000)).toEqual({ roles: [], leases: 0 });
    let after: Json | undefined;
    for (let i = 0; i < 20 && (!after || isToolError(after)); i += 1) {
      after = await client.request(toolCall(`after-restart-${i}`, 'query', { sql: 'SELECT count(*)::int AS n FROM patients' }), 20_000);
      if (isToolError(after)) await new Promise((r) => setTimeout(r, 250));
    }
    expect(isToolError(after!), resultText(after!)).toBe(false);
    await killed(child);
    });
  });

  // The broker notes each call in flight in a durable journal (its Vault token sealed with a keychain
  // key); the restarted core revokes that token and closes the call as `aborted`, with its join keys.
  it('on restart, the record of the call that was in flight is closed as aborted, with its revocation', async () => {
    const records = await recordsFor(requestId, 3_000);
    expect(records.map((x) => x.outcome)).toEqual(['aborted']);
    expect(records[0]!.hops).toEqual([expect.objectContaining({ name: 'revoke', outcome: 'ok', detail: 'revoked on restart' })]);
    expect(records[0]!.keys.db_role).toBe(role);
  });

  it('under load: every request id the core received has exactly one record, compared id by id, and no record has an id never sent', { timeout: 120_000 }, async () => {
    const { child, client } = await startBridgeChild();
    const total = LONG ? 400 : 60;
    const concurrency = 8;
    const sent: string[] = [];
    const answers = new Map<string, Json | Error>();
    let next = 0;
    let paused: Promise<void> | undefined;
    let holding = false;
    let killedAfter = -1;
    const worker = async (): Promise<void> => {
      for (let i = next++; i < total; i = next++) {
        // Checked again right before sending: a worker that got past an unset pause in the same turn
        // as the one that sets it would otherwise send a request the list below never waits for.
        while (holding) await paused;
        const id = `load-kill-${i}`;
        sent.push(id);
        answers.set(id, await client.request(toolCall(id, 'query', { sql: 'SELECT id, full_name FROM patients ORDER BY id' }), 60_000).catch((e: Error) => e));
        if (answers.size === Math.floor(total / 3) && !paused) {
          // Sending stops for a moment so that what was sent has been read by the core (a request still
          // in the kernel's buffer when the process dies never reached it); calls stay in flight.
          let resume!: () => void;
          paused = new Promise<void>((r) => (resume = r));
          holding = true;
          killedAfter = answers.size;
          // Every call still waiting must have reached the core (begun in its journal, or already
          // recorded) before the kill: a request still in the socket's buffer never did. Waited for
          // by reading the core's own files, not for a fixed time, which a loaded machine outran.
          await reachedCore(sent.filter((id) => !answers.has(id)), 10_000);
          await killed(core!);
          core = await startCoreChild();
          holding = false;
          resume();
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    await killed(child);
    expect(killedAfter).toBeGreaterThan(0);
    expect(sent).toHaveLength(total);
    const counts = await withAudit((store) => requestIdCounts(store));
    const mine = new Map([...counts].filter(([id]) => String(id).startsWith('load-kill-')));
    const ids = compareIds(sent, mine);
    const aborted = await withAudit((s) => s.page({ limit: 500 }).records.filter((x) => String(x.keys.mcp_request_id).startsWith('load-kill-') && x.outcome === 'aborted').length);
    await reportCounters('kill-under-load', { lost_records: ids.lost.length, calls: total }, { duplicated_records: ids.duplicated.length, records_without_request: ids.unsent.length, aborted_in_flight: aborted });
    expect(ids).toEqual({ lost: [], duplicated: [], unsent: [] });
    expect(aborted).toBeGreaterThan(0);
    expect(await r.settled(8_000)).toEqual({ roles: [], leases: 0 });
  });

  it.runIf(LONG)('sees the orphaned credential gone once its TTL passes', { timeout: 90_000 }, async () => {
    expect(await r.settled(75_000)).toEqual({ roles: [], leases: 0 });
  });
});

// Vault's native agent mode keeps no Vault token to seal: the lease was minted under the OBO itself.
// The restarted core asks the IdP for a revocation-only OBO (sys/leases/revoke for that one lease) and
// revokes the lease with it, long before its 60 s TTL.
describe('the core killed mid-call in Vault agent mode and started again', () => {
  it('revokes the lease the killed run left with a revocation-only OBO: no role or lease left, one aborted record saying so, and the bridge is served again', async () => {
    await ledger.run('core killed with SIGKILL between mint and revoke (agent mode)', 'process', async () => {
      const agentHome = join(work, 'home-agent');
      const configFile = join(work, 'config-agent.json');
      await writeFile(
        configFile,
        JSON.stringify({
          idp: { issuer: r.lab.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true },
          vault: { address: vaultTap.url, mode: 'agent', timeoutMs: 5_000, allowInsecureHttpForLoopbackOnly: true },
          policyFile: DEMO_POLICY_FILE,
          postgres: r.connection,
          demo: true,
        }),
      );
      const dataDir = resolvePaths({ platform: process.platform, env: { COUNTERSIGN_HOME: agentHome }, home: agentHome }).dataDir;
      let agentCore = await startCoreChild({ home: agentHome, configFile });
      try {
        expect(await r.settled(8_000)).toEqual({ roles: [], leases: 0 });
        const { child, client } = await startBridgeChild(agentHome);
        const id = 'doomed-agent-1';
        client.send(toolCall(id, 'query', { sql: 'SELECT pg_sleep(3), id FROM patients WHERE id = 1' }));
        const role = await untilStatementRuns(client);
        const killedAt = Date.now();
        await killed(agentCore);
        expect(isToolError(await client.response(id, 10_000))).toBe(true);
        // The dead run's credential is still there: a lease of the read role, and its database role.
        const left = r.lab.vault.leaseIds();
        expect(left).toHaveLength(1);
        expect(left[0]).toMatch(/^database\/creds\/clinic-read\//);
        expect(await r.admin('SELECT 1 FROM pg_roles WHERE rolname = $1', [role])).toHaveLength(1);

        agentCore = await startCoreChild({ home: agentHome, configFile });
        expect(await r.settled(8_000)).toEqual({ roles: [], leases: 0 });
        // Well inside the lease's TTL: the restart revoked it, it did not expire.
        expect(Date.now() - killedAt).toBeLessThan(45_000);

        const records = await recordsFor(id, 3_000, dataDir);
        expect(records.map((x) => x.outcome)).toEqual(['aborted']);
        const record = records[0]!;
        expect(record.keys.lease_id).toBe(left[0]);
        expect(record.keys.db_role).toBe(role);
        expect(record.hops.map((h) => [h.name, h.outcome])).toEqual([
          ['exchange', 'ok'],
          ['revoke', 'ok'],
        ]);
        expect(record.hops[1]!.detail).toBe('mode=agent lease revoked on restart with a revocation-only OBO');
        expect(record.summary).toContain('its lease was revoked on restart with a revocation-only OBO');

        // Vault's audit shows the revocation made with a fresh OBO (its own jti), whose only entry is that lease.
        const revocationJti = /jwt_unique_id=([\w-]+)/.exec(record.hops[0]!.detail!)![1]!;
        expect(revocationJti).not.toBe(record.keys.obo_jti);
        const lines = readFileSync(r.lab.vaultAuditLogPath, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { type: string; error?: string; request?: { path?: string }; auth?: { metadata?: Record<string, string> } })
          .filter((l) => l.type === 'response' && l.auth?.metadata?.['jwt_unique_id'] === revocationJti);
        expect(lines.map((l) => [l.request?.path, l.error])).toEqual([['sys/leases/revoke', undefined]]);
        expect(JSON.parse(lines[0]!.auth!.metadata!['jwt_authorization_details']!)).toEqual([
          { type: 'vault:path_access', path: 'sys/leases/revoke', capabilities: ['update'], allowed_parameters: { lease_id: [left[0]], sync: [] } },
        ]);

        let after: Json | undefined;
        for (let i = 0; i < 20 && (!after || isToolError(after)); i += 1) {
          after = await client.request(toolCall(`agent-after-restart-${i}`, 'query', { sql: 'SELECT count(*)::int AS n FROM patients' }), 20_000);
          if (isToolError(after)) await new Promise((r) => setTimeout(r, 250));
        }
        expect(isToolError(after!), resultText(after!)).toBe(false);
        await killed(child);
        // Each request id the agent-mode core received has exactly one record.
        const counts = await withAudit((store) => requestIdCounts(store), dataDir);
        expect(counts.get(id)).toBe(1);
        expect([...counts.values()].every((n) => n === 1)).toBe(true);
        expect(await r.settled(8_000)).toEqual({ roles: [], leases: 0 });
      } finally {
        await killed(agentCore);
      }
    });
  });
});
