/**
 * Hostile input, as bounded property-based fuzzing (fast-check): the bridge's stdin, the core's socket
 * after the handshake, the policy file parser, and tool arguments through the PostgreSQL planner.
 * Never a crash, always an answer: every request with an id gets a response with that id, the process
 * stays up, and every refusal is an AppError with a known code.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError, ERROR_CODES } from '../../common/errors.ts';
import { resolvePaths, type CountersignPaths } from '../../common/paths.ts';
import { connectOnce } from '../../bridge/core-connection.ts';
import { startSocketServer, type SocketServer } from '../../main/core/mcp/socket-server.ts';
import { parsePolicy } from '../../main/core/policy/policy.ts';
import { DEMO_POLICY, DEMO_POLICY_FILE, LONG, reportCounters, startReliabilityLab, type ReliabilityLab } from './harness.ts';
import { INITIALIZE, lineClient, type Json, type LineClient } from './wire.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RUNS = LONG ? 1_000 : 120;
const UNIT_RUNS = LONG ? 3_000 : 300;

let r: ReliabilityLab;
let work: string;
let paths: CountersignPaths;
let server: SocketServer;
let bridgePath: string;
const children = new Set<ChildProcess>();
const sockets = new Set<Socket>();
let badInputs = 0;

beforeAll(async () => {
  r = await startReliabilityLab();
  work = await mkdtemp(join(tmpdir(), 'countersign-fuzz-'));
  const home = join(work, 'home');
  paths = resolvePaths({ platform: process.platform, env: { COUNTERSIGN_HOME: home }, home });
  server = await startSocketServer({ paths, toolHost: r.broker(), log: { info() {}, warn() {}, error() {} } });
  bridgePath = join(work, 'bridge.mjs');
  execFileSync(process.execPath, [join(ROOT, 'scripts/build-bridge.mjs'), '--outfile', bridgePath], { stdio: 'pipe' });
}, 90_000);

afterAll(async () => {
  await reportCounters('hostile-input', { bad_inputs_tried: badInputs });
  for (const s of sockets) s.destroy();
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await server?.close();
  await r?.stop();
  if (work) await rm(work, { recursive: true, force: true });
}, 60_000);

let seq = 0;
const nextId = (): string => `fz-${++seq}`;

/** A new connection to the core's socket with an initialized MCP session on it, closed after the file. */
async function initializedSession(label: string): Promise<{ socket: Socket; client: LineClient }> {
  const { socket } = await connectOnce(paths);
  sockets.add(socket);
  const client = lineClient(socket, socket);
  await client.request(INITIALIZE(label));
  client.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
  return { socket, client };
}

const TOOL_NAMES = ['query', 'execute', 'list_tables', 'describe_table'];
const SQL_FRAGMENTS = [
  'SELECT',
  'id',
  '*',
  'FROM',
  'patients',
  'notes',
  'appointments',
  'WHERE',
  'vip',
  '=',
  '$1',
  ';',
  'DROP TABLE',
  'UPDATE',
  'SET',
  'DELETE FROM',
  'INSERT INTO',
  'VALUES (1)',
  'pg_authid',
  'UNION SELECT',
  '--',
  '/*',
  "'",
  '"',
  'LIMIT 1',
  'count(*)',
  'pg_sleep(0.01)',
  'COPY',
  'TO PROGRAM',
  'GRANT ALL',
  '\u202e',
  '\u0000',
];
const sqlish = fc.oneof(
  fc.array(fc.constantFrom(...SQL_FRAGMENTS), { maxLength: 12 }).map((parts) => parts.join(' ')),
  fc.string({ maxLength: 200 }),
);
const toolArgs = fc.oneof(
  fc.record({ sql: sqlish }, { requiredKeys: [] }),
  // Valid statements with hostile parameters, so calls reach the exchange, Vault and the database.
  fc.record({
    sql: fc.constantFrom('SELECT id, full_name FROM patients WHERE id = $1', 'SELECT body FROM notes WHERE body = $1', 'SELECT count(*) FROM appointments'),
    params: fc.array(fc.oneof(fc.string({ maxLength: 50 }), fc.integer(), fc.double(), fc.constant(null), fc.jsonValue({ maxDepth: 2 })), { maxLength: 2 }),
  }),
  fc.record({ sql: sqlish, params: fc.array(fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.object()), { maxLength: 4 }) }),
  fc.record({ table: fc.oneof(fc.constantFrom('patients', 'notes', 'pg_authid', '../x', 'patients; DROP TABLE notes'), fc.string()) }),
  fc.dictionary(fc.string({ maxLength: 12 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 5 }),
);

/** One line a hostile or broken client might send, and whether it is a request we must see answered. */
const hostileLine: fc.Arbitrary<{ line: string; id?: string }> = fc.oneof(
  fc.string({ maxLength: 300 }).map((s) => ({ line: s.replace(/\n/g, ' ') })),
  fc.jsonValue({ maxDepth: 4 }).map((v) => ({ line: JSON.stringify(v) })),
  fc.constantFrom('{', '[]', '[{"jsonrpc":"2.0","id":1,"method":"ping"}]', 'null', '{"jsonrpc":"1.0"}', '\u0000\u0001\u0002', '{"jsonrpc":"2.0","id":{},"method":"ping"}').map((line) => ({ line })),
  fc
    .record({
      method: fc.oneof(fc.constantFrom('tools/call', 'tools/list', 'ping', 'initialize', 'resources/list', 'prompts/list', 'logging/setLevel', 'completion/complete'), fc.string({ maxLength: 30 })),
      params: fc.oneof(fc.constant(undefined), fc.jsonValue({ maxDepth: 3 }), fc.record({ name: fc.oneof(fc.constantFrom(...TOOL_NAMES), fc.string({ maxLength: 20 })), arguments: toolArgs })),
    })
    .map(({ method, params }) => {
      const id = nextId();
      return { line: JSON.stringify({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) }), id };
    }),
  fc
    .record({ method: fc.constantFrom('notifications/cancelled', 'notifications/initialized', 'notifications/progress', 'notifications/x'), params: fc.jsonValue({ maxDepth: 2 }) })
    .map((n) => ({ line: JSON.stringify({ jsonrpc: '2.0', ...n }) })),
);

/** A `tools/call` with any tool name and arguments: every batch carries one, so each run reaches the broker. */
const hostileCall: fc.Arbitrary<{ line: string; id: string }> = fc
  .record({ name: fc.oneof(fc.constantFrom(...TOOL_NAMES), fc.string({ maxLength: 20 })), arguments: toolArgs })
  .map((params) => {
    const id = nextId();
    return { line: JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params }), id };
  });
const hostileBatch = fc.tuple(fc.array(hostileLine, { minLength: 0, maxLength: 5 }), hostileCall).map(([lines, c]) => [...lines, c]);

/** Sends a batch, then a ping; every request with an id in the batch and the ping must be answered. */
async function batchIsAnswered(client: LineClient, batch: Array<{ line: string; id?: string }>): Promise<void> {
  for (const b of batch) client.sendRaw(b.line + '\n');
  badInputs += batch.length;
  const probe = nextId();
  const pong = await client.request({ jsonrpc: '2.0', id: probe, method: 'ping' }, 45_000);
  expect(pong.result ?? pong.error).toBeDefined();
  for (const b of batch) if (b.id) expect((await client.response(b.id, 45_000)).id).toBe(b.id);
}

describe('the core socket after the handshake', () => {
  it('answers every request in any sequence of hostile lines and keeps serving', { timeout: LONG ? 600_000 : 150_000 }, async () => {
    const recordsBefore = r.audit.count();
    const { socket, client } = await initializedSession('init');
    await fc.assert(
      fc.asyncProperty(hostileBatch, (batch) => batchIsAnswered(client, batch)),
      { numRuns: RUNS },
    );
    expect(socket.destroyed).toBe(false);
    // The fuzz reached the whole pipeline, not only the parser: calls were run and recorded.
    expect(r.audit.count() - recordsBefore).toBeGreaterThan(0);
    expect((await r.audit.verify()).ok).toBe(true);
    expect(await r.settled(20_000)).toEqual({ roles: [], leases: 0 });
    // A new connection is served too: nothing above hurt the server.
    const { socket: again } = await connectOnce(paths);
    sockets.add(again);
    const fresh = lineClient(again, again);
    expect((await fresh.request(INITIALIZE('again'))).result).toBeTruthy();
    again.destroy();
    socket.destroy();
  });
});

describe('arguments nested deeper or larger than any real call', () => {
  it('refuses the call with INPUT_INVALID and one record per request id, without the arguments, and keeps recording the calls after it', { timeout: 60_000 }, async () => {
    const { socket, client } = await initializedSession('init-deep');
    // Written as text: 10,000 and 65 levels of arrays, a 20 KB and a 150-byte line a model could send.
    const ids: string[] = [];
    for (const depth of [10_000, 65]) {
      const id = nextId();
      ids.push(id);
      client.sendRaw(`{"jsonrpc":"2.0","id":"${id}","method":"tools/call","params":{"name":"query","arguments":{"sql":"SELECT 1","params":${'['.repeat(depth)}1${']'.repeat(depth)}}}}\n`);
      badInputs += 1;
      const answer = (await client.response(id, 30_000)) as { result?: { isError?: boolean; content?: Array<{ text?: string }> } };
      expect(answer.result?.isError).toBe(true);
      expect(answer.result?.content?.[0]?.text).toMatch(/nest more than 64 levels deep.*\[INPUT_INVALID\]$/);
    }
    // 2 MB of values: a record of that size would be written, indexed and carried by every timeline page.
    const large = nextId();
    ids.push(large);
    const values = Array.from({ length: 4 }, () => 'v'.repeat(500_000));
    const json = JSON.stringify({ sql: 'SELECT $1::text', params: values });
    client.sendRaw(`{"jsonrpc":"2.0","id":"${large}","method":"tools/call","params":{"name":"query","arguments":${json}}}\n`);
    badInputs += 1;
    const refused = (await client.response(large, 30_000)) as { result?: { isError?: boolean; content?: Array<{ text?: string }> } };
    expect(refused.result?.content?.[0]?.text).toBe(
      `The call's arguments are ${json.length} bytes of JSON (sha256:${createHash('sha256').update(json).digest('hex')}), more than the 262144 Countersign runs and records, so it neither ran nor recorded them. Send less in one call. [INPUT_INVALID]`,
    );
    const after = nextId();
    ids.push(after);
    const ok = (await client.request({ jsonrpc: '2.0', id: after, method: 'tools/call', params: { name: 'query', arguments: { sql: 'SELECT id FROM patients ORDER BY id LIMIT 1' } } }, 30_000)) as { result?: { isError?: boolean } };
    expect(ok.result?.isError).toBeFalsy();
    // Counted by request id: each of the four has exactly one record, the refused three without arguments.
    const records = r.audit.page({ limit: 200 }).records.filter((rec) => ids.includes(String(rec.keys?.mcp_request_id)));
    expect(records.map((rec) => String(rec.keys?.mcp_request_id)).sort()).toEqual([...ids].sort());
    for (const rec of records.filter((x) => x.keys?.mcp_request_id !== after)) expect(rec).toMatchObject({ outcome: 'error', error: { code: 'INPUT_INVALID' } });
    expect(records.filter((x) => x.args === undefined).length).toBe(3);
    expect((await r.audit.verify()).ok).toBe(true);
    socket.destroy();
  });
});

describe('a tool name or a request id longer than any real one', () => {
  it('is cut in the answer (the name) and in the record (both)', { timeout: 60_000 }, async () => {
    const { socket, client } = await initializedSession('init-name');
    const id = nextId();
    const answer = (await client.request({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'q'.repeat(1_000_000), arguments: {} } }, 30_000)) as { error?: { message?: string } };
    badInputs += 1;
    expect(answer.error?.message).toMatch(/There is no tool named q{64}… \(1000000 characters\)\./);
    expect(answer.error!.message!.length).toBeLessThan(300);
    const [record] = r.audit.page({ limit: 200 }).records.filter((rec) => rec.keys?.mcp_request_id === id);
    expect(record).toMatchObject({ tool: `${'q'.repeat(64)}… (1000000 characters)`, error: { code: 'TOOL_UNKNOWN' } });
    expect(JSON.stringify(record).length).toBeLessThan(4_000);

    // The same for a request id of a megabyte: the answer must carry it (JSON-RPC), the record keeps its start and digest.
    const long = `i${'d'.repeat(999_999)}`;
    const again = (await client.request({ jsonrpc: '2.0', id: long, method: 'tools/call', params: { name: 'query', arguments: { sql: 'SELECT 1' } } }, 30_000)) as { id?: string };
    badInputs += 1;
    expect(again.id).toBe(long);
    const kept = `${long.slice(0, 64)}… (1000000 characters, sha256:${createHash('sha256').update(long).digest('hex')})`;
    const records = r.audit.page({ limit: 200 }).records.filter((rec) => rec.keys?.mcp_request_id === kept);
    expect(records).toHaveLength(1);
    expect(JSON.stringify(records[0]).length).toBeLessThan(6_000);
    socket.destroy();
  });
});

describe("the bridge's stdin", () => {
  it('relays an answer to every request in any sequence of hostile lines and stays up', { timeout: LONG ? 600_000 : 150_000 }, async () => {
    const child = spawn(process.execPath, [bridgePath], {
      env: { PATH: process.env.PATH ?? '', HOME: paths.dataDir, COUNTERSIGN_HOME: paths.dataDir, COUNTERSIGN_APP_CMD: '[]' },
      stdio: ['pipe', 'pipe', 'ignore'],
    });
    children.add(child);
    const client = lineClient(child.stdout!, child.stdin!);
    await client.request(INITIALIZE('init'));
    client.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    await fc.assert(
      fc.asyncProperty(hostileBatch, (batch) => batchIsAnswered(client, batch)),
      { numRuns: RUNS },
    );
    expect(child.exitCode).toBeNull();
    // Every line on stdout is protocol: JSON-RPC, nothing else.
    for (const line of client.received) expect((JSON.parse(line) as Json).jsonrpc).toBe('2.0');
    child.kill('SIGTERM');
  });
});

describe('the policy file parser', () => {
  const demo = readFileSync(DEMO_POLICY_FILE, 'utf8');
  const refusesCleanly = (text: string): void => {
    badInputs += 1;
    try {
      parsePolicy(text, 'fuzz.policy.jsonc');
    } catch (error) {
      expect(AppError.is(error, 'POLICY_INVALID'), String(error)).toBe(true);
      expect((error as AppError).message).toMatch(/^(fuzz\.policy\.jsonc:\d+:\d+|The policy file is invalid)/);
    }
  };

  it('parses or refuses with POLICY_INVALID and a line and field, for any text', () => {
    fc.assert(fc.property(fc.string({ maxLength: 2_000 }), refusesCleanly), { numRuns: UNIT_RUNS });
  });

  it('parses or refuses with POLICY_INVALID for any JSON value', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => refusesCleanly(JSON.stringify(v))), { numRuns: UNIT_RUNS });
  });

  it('parses or refuses with POLICY_INVALID for any damaged copy of the demo policy', () => {
    const edit = fc.record({ at: fc.nat({ max: demo.length }), cut: fc.nat({ max: 40 }), insert: fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom('{', '}', '"', ',', '4', '-1', 'null', '[]', '1e999', '"tier": 0')) });
    fc.assert(
      fc.property(fc.array(edit, { minLength: 1, maxLength: 4 }), (edits) => {
        let text = demo;
        for (const e of edits) text = text.slice(0, e.at) + e.insert + text.slice(e.at + e.cut);
        refusesCleanly(text);
      }),
      { numRuns: UNIT_RUNS },
    );
  });
});

describe("tool arguments through the PostgreSQL connector's planner", () => {
  it('plans truthfully or refuses with a known code, for any tool name and arguments', async () => {
    const connector = r.postgresConnector();
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.constantFrom(...TOOL_NAMES), fc.string({ maxLength: 20 })), toolArgs, async (tool, args) => {
        badInputs += 1;
        try {
          const plan = await connector.plan(tool, args);
          expect([1, 2, 3, 4]).toContain(plan.tier);
          expect(plan.authorizationDetails.length).toBeGreaterThan(0);
          expect(typeof plan.bytes).toBe('string');
          // A read tool never carries a write: its RAR asks for SELECT only, or it was refused.
          if (tool === 'query') {
            for (const d of plan.authorizationDetails) for (const a of d.actions ?? []) expect(a).toBe('SELECT');
          }
        } catch (error) {
          expect(error, String(error)).toBeInstanceOf(AppError);
          expect(ERROR_CODES).toContain((error as AppError).code);
          expect((error as AppError).code).not.toBe('INTERNAL');
        }
      }),
      { numRuns: UNIT_RUNS },
    );
    expect(DEMO_POLICY.location).toBeTruthy();
  });
});
