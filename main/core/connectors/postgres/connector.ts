/**
 * The PostgreSQL connector: tools `query`, `execute`, `list_tables`, `describe_table`. Each call runs
 * on its own `pg` Client as the ephemeral role Vault minted for it, with `application_name` = the OBO
 * `jti` (so PostgreSQL's log joins the audit record), a statement time-out, a row cap and, for reads, a
 * read-only transaction. Every statement goes over the extended query protocol (one statement, values
 * bound, never the simple-query path), with the search_path pinned to the schema the classifier
 * resolves unqualified names in and standard_conforming_strings on (the parser's reading of literals).
 * pg errors become AppErrors by SQLSTATE, in one place (`toAppError`).
 */
import pg from 'pg';
import { observingWire, onWire, ownInWait } from '../../wire-time.ts';
import { canonicalJson } from '../../../../common/canonical-json.ts';
import { z } from 'zod';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { AppError } from '../../../../common/errors.ts';
import { KnownSecrets } from '../../audit/redact.ts';
import type { PostgresPolicy } from '../../policy/policy.ts';
import type { CallPlan, Connector, ExecuteContext } from '../types.ts';
import { tlsConnectFailure } from './tls.ts';
import { CONNECTOR_NAME, DescribeTableArgs, ExecuteArgs, ListTablesArgs, QueryArgs, planPostgresCall, type PostgresCallDetails } from './plan.ts';
import { queryExtended } from './extended-query.ts';
import { describePreflightFailure, preflightGuard } from './preflight.ts';
import { TABLE_SCHEMA } from './sql-names.ts';

export interface PostgresConnection {
  host: string;
  port: number;
  database: string;
  /** TLS options for `pg` (tls.ts `postgresSsl`, from the configuration's `sslmode`); off for the loopback lab. */
  ssl?: pg.ClientConfig['ssl'];
  connectTimeoutMs?: number;
}

export interface PostgresConnectorOptions {
  policy: PostgresPolicy;
  connection: PostgresConnection;
}

export interface QueryResultContent {
  [key: string]: unknown;
  columns: string[];
  rows: Array<Record<string, unknown>>;
  rowCount: number;
  truncated: boolean;
  command: string;
  note?: string;
}

const TOOL_NAMES = ['query', 'execute', 'list_tables', 'describe_table'] as const;

export function createPostgresConnector(options: PostgresConnectorOptions): Connector {
  const { policy, connection } = options;
  /** Each plan this connector made, with the exact arguments it was made from and their parse. */
  const parsed = new WeakMap<CallPlan, { args: string; bytes: CallPlan['bytes']; planned: Awaited<ReturnType<typeof planPostgresCall>> }>();
  return {
    name: CONNECTOR_NAME,
    async listTools(): Promise<Tool[]> {
      return describeTools(policy.location);
    },
    hasTool(name: string): boolean {
      return (TOOL_NAMES as readonly string[]).includes(name);
    },
    async plan(tool, args): Promise<CallPlan> {
      const planned = await planPostgresCall(policy, tool, args);
      parsed.set(planned.plan, { args: canonicalJson(args), bytes: planned.plan.bytes, planned });
      return planned.plan;
    },
    async execute(ctx: ExecuteContext): Promise<CallToolResult> {
      if (ctx.credential.kind !== 'database') throw new AppError('INTERNAL', 'The PostgreSQL connector needs a database credential.');
      // What runs is derived from the arguments, not from the plan the broker carried (which is data).
      // When they are byte for byte those this plan was made from, their parse is reused; otherwise
      // they are parsed again, and must plan to the same statement.
      const known = parsed.get(ctx.plan);
      parsed.delete(ctx.plan);
      const { plan, details } =
        known && known.bytes === ctx.plan.bytes && known.args === canonicalJson(ctx.args) ? known.planned : await planPostgresCall(policy, ctx.plan.tool, ctx.args);
      if (plan.bytes !== ctx.plan.bytes) throw new AppError('INTERNAL', 'The statement changed after it was planned.');
      ctx.note({ db_role: ctx.credential.username });
      const result = await runStatement(connection, ctx.credential.username, ctx.credential.password, ctx.oboJti, details, ctx.signal);
      return render(result, plan.tool);
    },
    async verifyRevoked(credential, signal) {
      if (credential.kind !== 'database') return 'unknown';
      return roleStillLogsIn(connection, credential.username, credential.password, signal);
    },
  };
}

/**
 * Proves a revoked credential is dead by trying it: PostgreSQL answers 28P01/28000 once the role is
 * dropped (or past VALID UNTIL). A successful login means the role is still there.
 */
async function roleStillLogsIn(
  connection: PostgresConnection,
  user: string,
  password: string,
  signal: AbortSignal,
): Promise<'gone' | 'present' | 'unknown'> {
  const client = newSession(sessionConfig(connection, user, password, 'countersign-revoke-check'));
  // The socket itself, as for a statement: pg's end() during a login that gets no answer leaves
  // connect() waiting.
  const onAbort = (): void => void client.connection.stream.destroy();
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    await onWire('db', () => client.connect());
    return 'present';
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    return code === '28P01' || code === '28000' ? 'gone' : 'unknown';
  } finally {
    signal.removeEventListener('abort', onAbort);
    leaveSession(client);
  }
}

function describeTools(location: string): Tool[] {
  const schema = (s: z.ZodType): Tool['inputSchema'] => {
    const json = z.toJSONSchema(s, { io: 'input' }) as Record<string, unknown>;
    delete json.$schema;
    return json as Tool['inputSchema'];
  };
  return [
    {
      name: 'query',
      title: 'Query the database (read-only)',
      description: `Runs one read-only SQL statement on ${location} as you, with a credential minted for this call only. Returns at most a capped number of rows. A statement that writes or locks rows anywhere (a WITH that deletes, FOR UPDATE) or calls a function with side effects is refused: use execute.`,
      inputSchema: schema(QueryArgs),
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    {
      name: 'execute',
      title: 'Change data (bounded write)',
      description: `Runs one statement that changes or locks rows on ${location} as you: INSERT (also … ON CONFLICT), UPDATE, DELETE, MERGE, SELECT … FOR UPDATE, or a statement whose WITH writes. Writes need your approval; a statement that changes more rows than allowed, in any table, is rolled back.`,
      inputSchema: schema(ExecuteArgs),
      annotations: { readOnlyHint: false, destructiveHint: true, idempotentHint: false, openWorldHint: false },
    },
    {
      name: 'list_tables',
      title: 'List tables',
      description: `Lists the tables you can see on ${location}.`,
      inputSchema: schema(ListTablesArgs),
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    {
      name: 'describe_table',
      title: 'Describe a table',
      description: `Lists a table's columns and types on ${location}.`,
      inputSchema: schema(DescribeTableArgs),
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
  ];
}

/** Runs one statement as the per-call role. Exported for the benchmark's "hops alone" baseline. */
export async function runStatement(
  connection: PostgresConnection,
  user: string,
  password: string,
  applicationName: string,
  details: PostgresCallDetails,
  signal: AbortSignal,
): Promise<QueryResultContent> {
  signal.throwIfAborted();
  const client = newSession({
    ...sessionConfig(connection, user, password, applicationName),
    statement_timeout: details.limits.statementTimeoutMs,
    options: SESSION_OPTIONS,
    // Statements are written without waiting for the answer to the one before (pg 8.23's pipeline
    // mode, each with its own Sync), so a call's transaction costs one round trip: see runRead.
    pipeline: true,
  } as pg.ClientConfig);
  const onAbort = (): void => {
    // Closing the socket ends the backend; the role's revocation also terminates its sessions. The
    // socket itself: in pipeline mode pg's end() waits for the statements already sent to finish.
    client.connection.stream.destroy();
  };
  signal.addEventListener('abort', onAbort, { once: true });
  let budget: ReturnType<typeof resultBudget> | undefined;
  try {
    try {
      await onWire('db', () => client.connect());
    } catch (error) {
      // Before the session exists, anything without a SQLSTATE (time-out, socket) means unreachable.
      const code = (error as { code?: unknown }).code;
      if (!signal.aborted && !(typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code))) {
        if (connection.ssl) throw tlsConnectFailure(error);
        throw new AppError('DB_UNAVAILABLE', 'The database is not reachable or did not answer in time.', { cause: error });
      }
      throw error;
    }
    signal.throwIfAborted();
    budget = resultBudget(client, details.limits.maxResultBytes);
    const result = details.readOnly ? await runRead(client, details) : await runWrite(client, details, budget);
    // The last chunk may pass the limit and complete the answer at once: it is refused all the same.
    if (budget.passed()) throw resultTooLarge(details, undefined);
    return result;
  } catch (error) {
    if (signal.aborted) throw new AppError('CANCELLED', 'The call was cancelled while the database was working.', { cause: error });
    if (budget?.passed()) throw resultTooLarge(details, error);
    throw toAppError(error, password, user);
  } finally {
    signal.removeEventListener('abort', onAbort);
    leaveSession(client);
  }
}

/**
 * Tells `onOwn` how long pg spends computing the SCRAM proof as it logs in (PBKDF2 over the password,
 * 4,096 rounds at PostgreSQL's default, then the proof; about 1.5 ms on the lab's machine, twice a
 * call): work of this process inside `connect()`, not a wait on PostgreSQL. pg does it in its handler
 * of the server's SCRAM challenge (`Client#_handleAuthSASLContinue`, pg 8.23), which is timed here;
 * a test checks it is still called (test/core/connectors/postgres/scram-time.test.ts).
 */
export function timeScramProof(client: pg.Client, onOwn: (ms: number) => void): void {
  const c = client as unknown as { _handleAuthSASLContinue(message: unknown): Promise<void> };
  const original = c._handleAuthSASLContinue;
  c._handleAuthSASLContinue = async function (this: unknown, message: unknown): Promise<void> {
    const started = performance.now();
    try {
      await original.call(this, message);
    } finally {
      onOwn(performance.now() - started);
    }
  };
}

/** How long a session whose goodbye cannot be written (a stopped server, a full socket) is kept before it is dropped. */
const GOODBYE_MS = 1_000;

/**
 * Ends a session as libpq's PQfinish does: Terminate is written, then the socket is closed, without
 * waiting for PostgreSQL to close its side. pg's end() waits for that close, which comes once the
 * backend process has exited: about 8 ms a session on the lab, twice a call (the statement's session
 * and the revocation check's), with nothing to learn from it. By now every statement's answer (the
 * COMMIT's or ROLLBACK's included) or the login's refusal is in. Exported for the benchmark's
 * hand-made path, which ends its sessions the same way.
 */
export function leaveSession(client: pg.Client): void {
  const socket = client.connection.stream;
  if (socket.destroyed) return;
  const drop = (): void => void socket.destroy();
  const timer = setTimeout(drop, GOODBYE_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  // 'finish': Terminate and the FIN after it are written.
  socket.once('finish', drop);
  client.end().catch(() => {});
}

/**
 * Bounds what the call's statements may send back: past `limit` bytes on the session's socket it is
 * closed, so a value of hundreds of megabytes (`repeat('x', 3e8)`, a large bytea) is neither read into
 * the core nor passed on. pg's parser sees each chunk before this listener, so at most the limit and
 * one chunk are held. A write's COMMIT is only sent once its answers are in, so a closed session rolls
 * it back; and the count ends there (`close()`), so the answer to COMMIT, which is not the result, can
 * never pass the limit after the write has committed. `passed()` says whether the limit was passed.
 */
function resultBudget(client: pg.Client, limit: number): { passed: () => boolean; close: () => void } {
  const socket = client.connection.stream;
  let received = 0;
  let passed = false;
  const count = (chunk: Buffer): void => {
    received += chunk.length;
    if (received > limit && !passed) {
      passed = true;
      socket.destroy();
    }
  };
  socket.on('data', count);
  return { passed: () => passed, close: () => void socket.off('data', count) };
}

function resultTooLarge(d: PostgresCallDetails, cause: unknown): AppError {
  // A write's COMMIT goes out only after its answers are read, which the closed session refuses.
  return new AppError(
    'RESULT_TOO_LARGE',
    `The statement's result passed ${d.limits.maxResultBytes} bytes (the policy's maxResultBytes), so it was not read further${d.readOnly ? '' : ' and the statement was rolled back'}. Select fewer or shorter columns (substr, LIMIT) and ask again.`,
    { cause },
  );
}

/**
 * A session of a call, not yet connected. A connection error after connect would otherwise be an
 * unhandled 'error' event; when the wait on the network is timed, pg's SCRAM proof is counted as own time.
 */
function newSession(config: pg.ClientConfig): pg.Client {
  const client = new pg.Client(config);
  client.on('error', () => {});
  if (observingWire()) timeScramProof(client, (ms) => ownInWait('db', ms));
  return client;
}

/** Where and as whom a call's session connects, named in PostgreSQL's log by `applicationName`. */
function sessionConfig(connection: PostgresConnection, user: string, password: string, applicationName: string): pg.ClientConfig {
  const { host, port, database, ssl } = connection;
  return { host, port, database, user, password, ssl, application_name: applicationName, connectionTimeoutMillis: connection.connectTimeoutMs ?? 5_000 };
}

/**
 * Settings given at connection start, before any statement: names resolve as the classifier read them,
 * and string literals mean what PostgreSQL's parser (libpg-query) took them to mean.
 */
export const SESSION_OPTIONS = `-c search_path=${TABLE_SCHEMA} -c standard_conforming_strings=on`;

/** Every statement of a call goes over the extended protocol, its wait timed as the database's. */
function run(client: pg.Client, text: string, values: readonly unknown[] = []): Promise<pg.QueryResult> {
  return onWire('db', () => queryExtended(client, text, values));
}

/**
 * Sends `steps` in one round trip and waits for every answer. Inside the call's transaction a failed
 * step aborts it, and PostgreSQL refuses each step after it, unparsed, until the transaction's end,
 * so a statement behind a failed guard never runs. Throws the first failure: the guard's as the
 * problem it found, read again once the transaction is over.
 */
async function inOneRoundTrip(
  client: pg.Client,
  d: PostgresCallDetails,
  steps: Array<{ text: string; values?: readonly unknown[]; guard?: true }>,
  { leavesTransactionOpen = false } = {},
): Promise<pg.QueryResult[]> {
  const settled = await onWire('db', () => Promise.allSettled(steps.map((s) => queryExtended(client, s.text, s.values))));
  const failed = settled.findIndex((r) => r.status === 'rejected');
  if (failed === -1) return settled.map((r) => (r as PromiseFulfilledResult<pg.QueryResult>).value);
  const error = (settled[failed] as PromiseRejectedResult).reason as unknown;
  if (leavesTransactionOpen) await run(client, 'ROLLBACK').catch(() => {});
  if (steps[failed]!.guard) {
    const found = await onWire('db', () => describePreflightFailure(client, d.classification));
    if (found) throw found;
    if ((error as { code?: unknown }).code === '22012') {
      throw new AppError('SQL_UNCLASSIFIABLE', "The database's catalogue changed while the call was checked against it; run the call again.", { cause: error });
    }
  }
  throw error;
}

async function runRead(client: pg.Client, d: PostgresCallDetails): Promise<QueryResultContent> {
  const cap = d.limits.rowCap;
  const guard = d.catalog ? [] : preflightGuard(d.classification);
  if (d.classification.kind === 'EXPLAIN' || d.classification.nodeType === 'ExplainStmt') {
    // EXPLAIN cannot stand in a cursor; its output is a plan, a handful of rows.
    const answers = await inOneRoundTrip(client, d, [{ text: 'BEGIN READ ONLY' }, ...guard, { text: d.sql, values: d.params }, { text: 'COMMIT' }]);
    const result = answers.at(-2)!;
    return { columns: result.fields.map((f) => f.name), rows: result.rows.slice(0, cap).map(plainRow), rowCount: Math.min(result.rows.length, cap), truncated: result.rows.length > cap, command: 'EXPLAIN' };
  }
  // A cursor fetches one row past the cap, so a huge result is never pulled in full.
  const answers = await inOneRoundTrip(client, d, [
    { text: 'BEGIN READ ONLY' },
    ...guard,
    { text: `DECLARE countersign_rows NO SCROLL CURSOR FOR ${d.sql}`, values: d.params },
    { text: `FETCH ${cap + 1} FROM countersign_rows` },
    { text: 'COMMIT' },
  ]);
  const fetched = answers.at(-2)!;
  const truncated = fetched.rows.length > cap;
  const rows = truncated ? fetched.rows.slice(0, cap) : fetched.rows;
  return {
    columns: fetched.fields.map((f) => f.name),
    rows: rows.map(plainRow),
    rowCount: rows.length,
    truncated,
    command: 'SELECT',
    ...(truncated ? { note: `Only the first ${cap} rows are shown; narrow the query (WHERE, LIMIT) to see the rest.` } : {}),
  };
}

/**
 * Rows this transaction changed so far, in every table (CTEs, EXPLAIN ANALYZE, cascades and triggers
 * included), from PostgreSQL's per-transaction statistics; any role may read its own transaction's.
 * The view shows the session's counts not yet flushed, so it is this statement's alone only because
 * the session is the call's own and nothing before it in the transaction changes a row.
 */
const ROWS_CHANGED_SQL =
  'SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)::text AS changed FROM pg_catalog.pg_stat_xact_user_tables';

async function runWrite(client: pg.Client, d: PostgresCallDetails, budget: ReturnType<typeof resultBudget>): Promise<QueryResultContent> {
  // The count is read before the transaction ends, so COMMIT or ROLLBACK takes a second round trip.
  const answers = await inOneRoundTrip(
    client,
    d,
    [{ text: 'BEGIN' }, ...preflightGuard(d.classification), { text: d.sql, values: d.params }, { text: ROWS_CHANGED_SQL }],
    { leavesTransactionOpen: true },
  );
  const [result, counted] = answers.slice(-2);
  const affected = Math.max(Number((counted!.rows[0] as { changed?: string } | undefined)?.changed ?? 0), result!.rowCount ?? 0);
  if (affected > d.limits.maxAffectedRows) {
    await run(client, 'ROLLBACK');
    throw new AppError(
      'POLICY_BLOCKED',
      `The statement would change ${affected} rows, more than the ${d.limits.maxAffectedRows} allowed per call; it was rolled back. Narrow the WHERE clause.`,
    );
  }
  // The last chunk of the answers may have passed the limit and closed the session: COMMIT is never sent.
  if (budget.passed()) throw resultTooLarge(d, undefined);
  // The result is in and within the limit: what comes back from here on is COMMIT's answer, which is
  // not the result and must not refuse a write that has committed.
  budget.close();
  await run(client, 'COMMIT');
  const cap = d.limits.rowCap;
  const rows = (result!.rows ?? []).slice(0, cap);
  return {
    columns: (result!.fields ?? []).map((f) => f.name),
    rows: rows.map(plainRow),
    rowCount: affected,
    truncated: (result!.rows ?? []).length > cap,
    command: result!.command,
  };
}

function plainRow(row: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(row)) {
    if (value instanceof Date) out[key] = Number.isNaN(value.getTime()) ? String(value) : value.toISOString();
    else if (Buffer.isBuffer(value)) out[key] = `\\x${value.toString('hex')}`;
    else if (typeof value === 'bigint') out[key] = value.toString();
    else out[key] = value;
  }
  return out;
}

/** SQLSTATE classes whose server message helps the person fix the statement and carries no credential. */
const SHAREABLE_CLASSES = new Set(['22', '23', '42']);

/** The one place pg's errors become AppErrors: by SQLSTATE or socket error code, never by text. */
function toAppError(error: unknown, ...secrets: string[]): AppError {
  if (error instanceof AppError) return error;
  const e = error as { code?: unknown; name?: unknown };
  const code = typeof e.code === 'string' ? e.code : '';
  if (e.name === 'AbortError') return new AppError('CANCELLED', 'The call was cancelled.', { cause: error });
  switch (code) {
    case '28P01':
    case '28000':
      return new AppError('DB_AUTH_FAILED', 'PostgreSQL refused the per-call credential (authentication failed).', { cause: error });
    case '57014':
      return new AppError('DB_TIMEOUT', 'The statement ran past its time-out and was cancelled; narrow it or add an index-friendly WHERE.', { cause: error });
    case '42501':
      return new AppError(
        'DB_PERMISSION_DENIED',
        'PostgreSQL denied the statement: the credential for this call does not permit it.',
        { cause: error },
      );
    case '25006':
      return new AppError('SQL_NOT_READ_ONLY', 'PostgreSQL refused a write inside the read-only transaction.', { cause: error });
    case 'ECONNREFUSED':
    case 'ECONNRESET':
    case 'EHOSTUNREACH':
    case 'ENOTFOUND':
    case 'ETIMEDOUT':
    case '57P01':
    case '57P03':
    case '53300':
      return new AppError('DB_UNAVAILABLE', 'The database is not reachable or not accepting connections.', { cause: error });
    default:
      break;
  }
  if (/^[0-9A-Z]{5}$/.test(code) && SHAREABLE_CLASSES.has(code.slice(0, 2))) {
    // Masked before it is cut, so a cut cannot leave part of a secret.
    const text = KnownSecrets.of(secrets).mask(String((error as Error).message ?? '')).slice(0, 300);
    return new AppError('DB_ERROR', `PostgreSQL rejected the statement (SQLSTATE ${code}): ${text}`, { cause: error });
  }
  return new AppError('DB_ERROR', `PostgreSQL could not run the statement${code ? ` (SQLSTATE ${code})` : ''}.`, { cause: error });
}

function render(result: QueryResultContent, tool: string): CallToolResult {
  const text = tool === 'execute' ? `${result.command}: ${result.rowCount} row(s) affected.\n${table(result)}` : table(result);
  return {
    content: [{ type: 'text', text: result.note ? `${text}\n${result.note}` : text }],
    structuredContent: result,
  };
}

function cell(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  const s = typeof value === 'object' ? JSON.stringify(value) : String(value);
  return s.replace(/\|/g, '\\|').replace(/\r?\n/g, ' ');
}

/** A Markdown table: Claude reads it well and it renders in the app. */
function table(r: QueryResultContent): string {
  if (r.columns.length === 0) return '';
  const head = `| ${r.columns.join(' | ')} |\n|${r.columns.map(() => ' --- ').join('|')}|`;
  const body = r.rows.map((row) => `| ${r.columns.map((c) => cell(row[c])).join(' | ')} |`).join('\n');
  return `${head}${body ? `\n${body}` : ''}\n(${r.rows.length} row${r.rows.length === 1 ? '' : 's'}${r.truncated ? ', truncated' : ''})`;
}
