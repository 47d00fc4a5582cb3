/**
 * The catalogue check against the lab's real PostgreSQL, through the connector's own execution path
 * (runStatement) as a fresh login role in the clinic's group roles, as Vault mints them. Only the arms
 * a statement has something to check are sent; each arm, sent alone or beside others, still refuses
 * what it is there for, and the statement sent behind it in the same round trip never runs: each decoy
 * writes a line to PostgreSQL's own log when it runs (RAISE LOG survives a read-only transaction and a
 * rollback, where a sequence could not be advanced), and that line never appears.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, type LabPostgres } from '../../../../lab/postgres.ts';
import { AppError } from '../../../../common/errors.ts';
import { runStatement, type PostgresConnection } from '../../../../main/core/connectors/postgres/connector.ts';
import { planPostgresCall } from '../../../../main/core/connectors/postgres/plan.ts';
import { oraclePolicy } from './sql-oracle.ts';

const POLICY = oraclePolicy();
const MARK = `decoy-ran-${randomBytes(6).toString('hex')}`;

/** Each decoy logs MARK and its name when PostgreSQL runs it. */
const FIXTURE = `
CREATE FUNCTION public.decoy_mark(what text) RETURNS int LANGUAGE plpgsql VOLATILE AS $$ BEGIN RAISE LOG '${MARK} %', what; RETURN 1; END $$;
CREATE VIEW public.decoy_view AS SELECT public.decoy_mark('view') AS n;
CREATE FUNCTION public.upper(x integer) RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM public.decoy_mark('function'); RETURN 'shadowed'; END $$;
CREATE FUNCTION public.decoy_concat(a integer, b integer) RETURNS text LANGUAGE plpgsql AS $$ BEGIN PERFORM public.decoy_mark('operator'); RETURN a::text || b::text; END $$;
CREATE OPERATOR public.|| (LEFTARG = integer, RIGHTARG = integer, FUNCTION = public.decoy_concat);
CREATE TABLE public.decoy_table (n int);
CREATE TABLE public.decoy_parent (id int, note text);
CREATE TABLE public.decoy_child () INHERITS (public.decoy_parent);
GRANT SELECT ON public.decoy_view, public.decoy_table TO PUBLIC;
GRANT SELECT, INSERT ON public.decoy_parent, public.decoy_child TO PUBLIC;
SET allow_system_table_mods = on;
CREATE VIEW pg_catalog.decoy_table AS SELECT public.decoy_mark('resolves') AS n;
GRANT SELECT ON pg_catalog.decoy_table TO PUBLIC;
`;

let db: LabPostgres;
let admin: pg.Client;
let connection: PostgresConnection;

beforeAll(async () => {
  db = await startPostgres();
  admin = new pg.Client({ connectionString: db.adminUrl });
  await admin.connect();
  await admin.query(FIXTURE);
  connection = { host: db.host, port: db.port, database: db.database };
}, 60_000);

afterAll(async () => {
  await admin?.end();
  await db?.stop();
});

/** Plans `sql` as the connector does and runs it as a login role minted for this call alone. */
async function call(tool: 'query' | 'execute', sql: string): Promise<{ ok: true; rows: unknown[] } | { ok: false; error: AppError }> {
  const { details } = await planPostgresCall(POLICY, tool, { sql });
  const user = `v-test-${randomBytes(5).toString('hex')}`;
  const password = randomBytes(12).toString('base64url');
  await admin.query(`CREATE ROLE "${user}" LOGIN PASSWORD '${password}' IN ROLE ${tool === 'query' ? 'clinic_reader' : 'clinic_writer'}`);
  try {
    const result = await runStatement(connection, user, password, `preflight-test-${randomUUID()}`, details, new AbortController().signal);
    return { ok: true, rows: result.rows };
  } catch (error) {
    if (error instanceof AppError) return { ok: false, error };
    throw error;
  } finally {
    await admin.query(`DROP ROLE "${user}"`);
  }
}

async function refusal(tool: 'query' | 'execute', sql: string): Promise<string> {
  const r = await call(tool, sql);
  if (r.ok) throw new Error(`${sql} ran: ${JSON.stringify(r.rows)}`);
  expect(r.error.code, `${sql}: ${r.error.message}`).toBe('SQL_UNCLASSIFIABLE');
  return r.error.message;
}

const decoysRan = async (): Promise<string[]> => (await db.readLog()).split('\n').filter((l) => l.includes(`LOG:  ${MARK}`));

/** The guard of one call as PostgreSQL logged it (every statement is logged with its application_name). */
async function guardOf(sql: string): Promise<string | undefined> {
  const { details } = await planPostgresCall(POLICY, 'query', { sql });
  const app = `preflight-log-${randomUUID()}`;
  const user = `v-test-${randomBytes(5).toString('hex')}`;
  const password = randomBytes(12).toString('base64url');
  await admin.query(`CREATE ROLE "${user}" LOGIN PASSWORD '${password}' IN ROLE clinic_reader`);
  try {
    await runStatement(connection, user, password, app, details, new AbortController().signal);
  } finally {
    await admin.query(`DROP ROLE "${user}"`);
  }
  // One entry per log line that starts with its time; a statement's later lines follow it.
  const entries = (await db.readLog()).split(/\n(?=\d{4}-\d\d-\d\d )/);
  const mine = entries.filter((l) => l.includes(`app=${app}`) && l.includes('execute <unnamed>'));
  expect(mine.some((l) => l.includes('DECLARE countersign_rows'))).toBe(true);
  return mine.find((l) => l.includes(' AS refused '));
}

describe('the catalogue check', () => {
  it('sees a decoy that runs: its line is in the log once it is called', async () => {
    const seen = (await decoysRan()).length;
    await admin.query(`SELECT public.decoy_mark('self-test')`);
    expect((await decoysRan()).length).toBe(seen + 1);
  });

  it('sends only the arms a statement has something to check, and none when it has nothing', async () => {
    const tier1 = await guardOf('SELECT id, full_name FROM patients ORDER BY id LIMIT 5');
    expect(tier1).toContain('pg_catalog.pg_class');
    expect(tier1).toContain('to_regclass(pg_catalog.quote_ident(');
    expect(tier1).not.toContain('pg_proc');
    expect(tier1).not.toContain('pg_operator');
    // One arm alone: planned as a subquery of its own, the guard does not fail with no problem found.
    const one = await guardOf('SELECT id, full_name FROM public.patients');
    expect(one).toContain('pg_catalog.pg_class');
    expect(one).not.toContain('quote_ident');
    expect(await guardOf('SELECT 1')).toBeUndefined();
    // With no guard, EXPLAIN (sent without a cursor) still reads its own answer.
    expect(await call('query', 'EXPLAIN SELECT 1')).toMatchObject({ ok: true, rows: [{ 'QUERY PLAN': expect.stringContaining('Result') }] });
    const all = await guardOf('SELECT p.id FROM patients p WHERE p.id = 1');
    for (const part of ['pg_class', 'quote_ident', 'pg_proc', 'pg_operator']) expect(all).toContain(part);
    expect(await call('query', 'SELECT p.id, p.full_name FROM patients p WHERE p.id = 1')).toMatchObject({ ok: true, rows: [{ id: 1 }] });
  });

  it('refuses, by the arm alone, a view, an inheritance parent, a function look-alike and an operator look-alike, and what was sent behind it never runs', async () => {
    expect(await refusal('query', 'SELECT * FROM public.decoy_view')).toContain('public.decoy_view is a view');
    // Each table is checked: the view second among plain tables.
    expect(await refusal('query', 'SELECT n FROM public.patients, public.decoy_view')).toContain('public.decoy_view is a view');
    expect(await refusal('query', 'SELECT upper(1)')).toContain('holds a function named upper');
    expect(await refusal('query', 'SELECT 1 || 2')).toContain('holds an operator ||');
    const rows = async (): Promise<number> => (await admin.query('SELECT count(*)::int AS n FROM public.decoy_parent')).rows[0].n as number;
    const before = await rows();
    expect(await refusal('execute', "INSERT INTO public.decoy_parent VALUES (9, 'p')")).toContain('a table with inheritance children');
    expect(await rows()).toBe(before);
    expect(await decoysRan()).not.toContainEqual(expect.stringMatching(/ (view|function|operator)$/));
  });

  it('refuses an unqualified table name that PostgreSQL resolves elsewhere (pg_catalog is searched first), beside the kind arm', async () => {
    expect(await refusal('query', 'SELECT n FROM decoy_table')).toContain('The table name decoy_table does not resolve');
    expect(await refusal('query', 'SELECT n FROM patients, decoy_table')).toContain('The table name decoy_table does not resolve');
    expect(await refusal('execute', 'INSERT INTO public.decoy_table SELECT n FROM decoy_table')).toContain('does not resolve');
    expect(await decoysRan()).not.toContainEqual(expect.stringMatching(/ resolves$/));
    // Qualified, it reads the table the call names.
    expect(await call('query', 'SELECT n FROM public.decoy_table')).toMatchObject({ ok: true, rows: [] });
  });
});
