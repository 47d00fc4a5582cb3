/**
 * SQL governance end to end: an MCP client spawns the real bridge, which relays to a core socket whose
 * broker runs the PostgreSQL connector against the lab's real IdP, Vault stand-in and PostgreSQL. A
 * write wrapped as a read is refused by `query` and asks at its real tier through `execute`; the RAR
 * names every table, action and function; the row ceiling counts rows changed inside a CTE and under
 * EXPLAIN ANALYZE; a statement whose description would understate what PostgreSQL runs fails before it
 * runs. Approvals come from the scripted prompter FOR TESTS, which records what it was shown.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApprovalService } from '../../../../main/core/approvals/approval-service.ts';
import { approverFor } from '../../../../main/core/approvals/broker-approver.ts';
import { ScriptedPrompterForTests } from '../../../../main/core/approvals/prompter.ts';
import { createPostgresConnector } from '../../../../main/core/connectors/postgres/connector.ts';
import { startSocketServer, type SocketServer } from '../../../../main/core/mcp/socket-server.ts';
import { buildBridgeInto, quietLog, tempHome } from '../../../bridge/helpers.ts';
import { DEMO_POLICY, settled, startBrokerLab, type BrokerLab } from '../../broker/lab.ts';
import type { MemoryAudit } from '../../broker/fixtures.ts';

let lab: BrokerLab;
let server: SocketServer;
let client: Client;
let audit: MemoryAudit;
let work: string;
let home: ReturnType<typeof tempHome>;
const prompter = new ScriptedPrompterForTests(Array.from({ length: 50 }, () => 'approve' as const));

beforeAll(async () => {
  lab = await startBrokerLab();
  const approvals = new ApprovalService({ prompter });
  const b = lab.broker({ approver: approverFor(approvals), connectors: [createPostgresConnector({ policy: DEMO_POLICY, connection: lab.connection })] });
  audit = b.audit;
  home = tempHome();
  server = await startSocketServer({ paths: home.paths, toolHost: b.broker, log: quietLog });
  work = mkdtempSync(join(tmpdir(), 'cs-sql-bridge-'));
  const bridge = buildBridgeInto(work);
  client = new Client({ name: 'sql-governance-test', version: '1' });
  await client.connect(new StdioClientTransport({ command: process.execPath, args: [bridge], env: { ...getDefaultEnvironment(), COUNTERSIGN_HOME: home.home } }));
}, 90_000);

afterAll(async () => {
  await client?.close();
  await server?.close();
  await lab?.stop();
  home?.cleanup();
  if (work) rmSync(work, { recursive: true, force: true });
});

type Result = { content?: Array<{ text?: string }>; isError?: boolean };
const text = (r: Result): string => (r.content ?? []).map((c) => c.text ?? '').join('\n');
const callTool = async (name: string, args: Record<string, unknown>): Promise<Result> => (await client.callTool({ name, arguments: args })) as Result;
const count = async (sql: string): Promise<number> => (await lab.admin<{ n: number }>(`SELECT count(*)::int AS n FROM ${sql}`))[0]!.n;
const lastRar = (): Record<string, unknown> => (audit.records.at(-1)!.authorization_details as Array<Record<string, unknown>>)[0]!;

describe('SQL governance through the bridge', () => {
  it('refuses writes and row locks wrapped as reads at query, with no prompt and nothing changed', async () => {
    const notes = await count('notes');
    const shown = prompter.shown.length;
    for (const sql of [
      'WITH d AS (DELETE FROM notes WHERE id = 1 RETURNING *) SELECT * FROM d',
      'SELECT * FROM (WITH d AS (DELETE FROM notes WHERE id = 1 RETURNING id) SELECT * FROM d) s',
      'EXPLAIN ANALYZE DELETE FROM notes WHERE id = 1',
      "INSERT INTO notes (id, patient_id, body) OVERRIDING SYSTEM VALUE VALUES (1, 1, 'x') ON CONFLICT (id) DO UPDATE SET body = 'y'",
      'SELECT * FROM appointments WHERE id = 1 FOR UPDATE',
    ]) {
      const r = await callTool('query', { sql });
      expect(r.isError, sql).toBe(true);
      expect(text(r), sql).toContain('SQL_NOT_READ_ONLY');
    }
    expect(prompter.shown.length).toBe(shown);
    expect(await count('notes')).toBe(notes);
  });

  it('asks at the real tier through execute, and the RAR and the prompt name every table, action and change', async () => {
    const before = prompter.shown.length;
    const r = await callTool('execute', {
      sql: 'WITH d AS (DELETE FROM notes WHERE id = $1 RETURNING patient_id) SELECT p.full_name FROM patients p JOIN d ON d.patient_id = p.id',
      params: [6],
    });
    expect(r.isError, text(r)).toBeFalsy();
    const view = prompter.shown[before]!;
    expect(view.tier).toBe(2);
    expect(view.authorization.join('\n')).toContain('DELETE, SELECT');
    expect(view.authorization.join('\n')).toContain('public.notes, public.patients');
    expect(lastRar()).toMatchObject({ actions: ['DELETE', 'SELECT'], tables: ['public.notes', 'public.patients'], identifier: 'public.notes', bounded: true });
    expect(await count('notes WHERE id = 6')).toBe(0);
  });

  it('names the functions a read calls in its RAR, and refuses a function that reads tables named in a string', async () => {
    const ok = await callTool('query', { sql: 'SELECT lower(full_name), count(*) OVER () FROM patients WHERE id = 1' });
    expect(ok.isError, text(ok)).toBeFalsy();
    expect(lastRar()).toMatchObject({ actions: ['SELECT'], tables: ['public.patients'], functions: ['pg_catalog.count', 'pg_catalog.lower'] });
    const records = audit.records.length;
    for (const sql of ["SELECT query_to_xml('DELETE FROM notes RETURNING 1', true, false, '')", "SELECT nextval('notes_id_seq')", 'SELECT pg_advisory_lock(1)']) {
      const r = await callTool('query', { sql });
      expect(r.isError, sql).toBe(true);
      expect(text(r), sql).toContain('SQL_FUNCTION_NOT_ALLOWED');
    }
    // Refused before any exchange: whatever is recorded carries no OBO.
    for (const rec of audit.records.slice(records)) expect(rec.keys?.obo_jti).toBeUndefined();
  });

  it('sends every statement of a call over the extended protocol, in a session pinned to the names and literals the classifier read', async () => {
    const r = await callTool('query', { sql: "SELECT current_setting('search_path') AS path, current_setting('standard_conforming_strings') AS scs, 'a\\b' AS lit" });
    expect(r.isError, text(r)).toBeFalsy();
    // With standard_conforming_strings on, a backslash in a plain literal is a backslash.
    expect(text(r)).toContain('| public | on | a\\b |');
    const jti = audit.records.at(-1)!.keys!.obo_jti!;
    const mine = (await lab.pg.readLog()).split('\n').filter((l) => l.includes(`app=${jti}`) && /LOG: {2}(statement|execute)/.test(l));
    // BEGIN, the preflight, DECLARE … FOR the statement, FETCH, COMMIT: each a Parse/Bind/Execute.
    expect(mine.length).toBeGreaterThanOrEqual(5);
    expect(mine.filter((l) => l.includes('LOG:  statement:'))).toEqual([]);
    expect(mine.some((l) => l.includes('execute <unnamed>: DECLARE countersign_rows'))).toBe(true);
  });

  it('rolls back a write whose rows changed inside a CTE, or under EXPLAIN ANALYZE, pass the ceiling', async () => {
    const notes = await count('notes');
    for (const sql of [
      "WITH i AS (INSERT INTO notes (patient_id, body) SELECT 1, 'bulk' FROM generate_series(1, 60) LIMIT 60 RETURNING 1) SELECT count(*) FROM i",
      "EXPLAIN ANALYZE INSERT INTO notes (patient_id, body) SELECT 1, 'bulk' FROM generate_series(1, 60) LIMIT 60",
    ]) {
      const r = await callTool('execute', { sql });
      expect(r.isError, sql).toBe(true);
      expect(text(r), sql).toContain('would change 60 rows, more than the 50 allowed');
    }
    expect(await count('notes')).toBe(notes);
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
  });

  it('fails before running a statement whose description would understate it: p.f that PostgreSQL would run as f(p)', async () => {
    // A sequence is not transactional: its is_called is PostgreSQL's own record that leak ran, even
    // in a transaction rolled back afterwards.
    await lab.admin('CREATE SEQUENCE public.leak_calls; GRANT USAGE ON SEQUENCE public.leak_calls TO PUBLIC');
    await lab.admin(
      "CREATE FUNCTION public.leak(p public.patients) RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_catalog.nextval('public.leak_calls'); INSERT INTO public.notes (patient_id, body) VALUES (p.id, 'leak'); RETURN p.mrn; END $$",
    );
    try {
      const notes = await count('notes');
      const leak = await callTool('query', { sql: 'SELECT p.leak FROM patients p WHERE p.id = 1' });
      expect(leak.isError).toBe(true);
      expect(text(leak)).toContain('SQL_UNCLASSIFIABLE');
      expect(text(leak)).toContain('leak');
      // Sent behind the failed guard in the same round trip, as a read and as a write, and refused
      // unparsed: leak never ran.
      const write = await callTool('execute', { sql: "UPDATE notes n SET body = 'x' FROM patients p WHERE n.patient_id = p.id AND p.leak = 'x'" });
      expect(write.isError).toBe(true);
      expect(text(write)).toContain('SQL_UNCLASSIFIABLE');
      expect(await count('notes')).toBe(notes);
      const calls = await lab.admin('SELECT is_called FROM public.leak_calls');
      expect(calls).toEqual([{ is_called: false }]);
    } finally {
      await lab.admin('DROP FUNCTION public.leak(public.patients); DROP SEQUENCE public.leak_calls');
    }
  });
});
