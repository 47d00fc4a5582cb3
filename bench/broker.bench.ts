/**
 * Per-call broker benchmark against the lab, with the parts the app runs: the file-backed audit store
 * (WAL, synchronous=FULL, hash chain, redaction), the in-flight journal, and the real token source
 * (AuthService, signed in through the lab's login page over HTTP, DPoP when the IdP offers it). The
 * IdP, Vault stand-in and PostgreSQL are the lab's, over loopback sockets.
 *
 * Time is split at the network call only (main/core/wire-time.ts): an HTTP request to the IdP or Vault
 * until its answer is read, a PostgreSQL connect (less the SCRAM proof pg computes in it) or query.
 * Everything else inside a call is Countersign's own: validation, parsing and classifying the
 * statement (twice), the checks on the OBO (signature, claims, DPoP binding), the SCRAM proofs of its
 * two logins, building requests, rendering rows, the journal, the audit append and its fsync, and glue.
 * - call_tier1_total: one tier-1 `query` end to end through `broker.callTool`;
 * - call_tier1_total_agent_mode: the same call in Vault's native agent mode (the OBO is the Vault
 *   token: no login hop; the lease revoked with the OBO), interleaved with the others, the two modes
 *   taking turns going first; agent_mode_not_slower decides "not slower" on the pairs: the upper 95%
 *   bound of the median paired ratio within AGENT_MODE_MARGIN; call_tier1_mode_legs shows the part
 *   of a call that differs between the modes (exchange, Vault hops, revocation);
 * - call_tier1_total_answer_on_result: the same jwt-login call with the broker answering as soon as
 *   the statement's result is in hand (`answer: 'on-result'`), revoking, checking and recording just
 *   after, interleaved with the others; answer_on_result_vs_after_record is the p50 ratio against
 *   call_tier1_total (today's order: answer once recorded), goal <= 0.85 (docs/benchmarks.md, "When to
 *   answer");
 * A call's time is until the broker answers; the next call starts once this one is recorded, so a
 * revocation done after the answer is not counted in, nor left to overlap the next call.
 * - call_tier1_wire: the network waits of that call, by kind (idp, vault, db);
 * - own_overhead: total minus every network wait; own_overhead_share its share of the total;
 * - own_by_stage: where the own time goes (inside each hop, around the hops, the audit append);
 * - hops_alone_total: the same requests made by hand with the least a client needs (a DPoP proof, a
 *   form, the Vault API, the same statements), no broker, interleaved with the calls;
 * - duties_alone: what Countersign must do beyond those requests, each duty by the library call that
 *   does it and nothing around it, timed alone and interleaved with the calls: read the statement
 *   (libpg-query's parse), check the OBO (jose's jwtVerify against the IdP's keys, fetched once),
 *   chain the record (node:crypto's SHA-256 of it, one synced commit: node:sqlite, WAL,
 *   synchronous=FULL), make it searchable (an FTS5 row over its text and a row under the filter
 *   indexes, one commit at synchronous=NORMAL) and the journal's three least writes (the call in, its
 *   Vault token sealed with AES-256-GCM, the call out; WAL, synchronous=NORMAL). own_floor is the hand-made
 *   path's own time plus these: the least own time any client doing the same requests and duties with
 *   the same libraries spends on this machine; own_floor_share its share of call_tier1_total;
 * - throughput at concurrency 1, 8 and 32.
 *
 * `bench()` runs all of this in a process of its own with the core's Node options
 * (bench/fixtures/broker-child.ts), the lab's IdP and Vault stand-in answering from the bench's process.
 *
 * Run alone: `BENCH_ONLY=broker node bench/run.ts` (`BENCH_BROKER_SAMPLES`, default 200, calls per mode).
 */
import { createCipheriv, createHash, createPublicKey, randomBytes, randomUUID, verify as verifySignature, type JsonWebKey, type KeyObject } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance, PerformanceObserver } from 'node:perf_hooks';
import { readFileSync } from 'node:fs';
import { DatabaseSync } from 'node:sqlite';
import { SignJWT, createLocalJWKSet, exportJWK, jwtVerify, type JSONWebKeySet } from 'jose';
import { parse as parseSql } from 'libpg-query';
import pg from 'pg';
import type { Lab } from '../lab/index.ts';
import type { AuditRecord } from '../common/audit-record.ts';
import { AuditStore } from '../main/core/audit/store.ts';
import { SqliteCallJournal } from '../main/core/audit/journal.ts';
import { AuthService } from '../main/core/auth/auth-service.ts';
import { createBroker } from '../main/core/broker/index.ts';
import { createPostgresConnector, leaveSession, timeScramProof } from '../main/core/connectors/postgres/connector.ts';
import { planPostgresCall } from '../main/core/connectors/postgres/plan.ts';
import { createTokenExchanger } from '../main/core/idp/token-exchange.ts';
import { parsePolicy, type PostgresPolicy } from '../main/core/policy/policy.ts';
import { MemorySecretStore } from '../main/core/secrets/memory-store.ts';
import { createVaultClient } from '../main/core/vault/client.ts';
import { observeWire, type WireKind } from '../main/core/wire-time.ts';
import type { ToolCallRequest } from '../main/core/connectors/types.ts';
import type { AuditSink, CallJournal } from '../main/core/ports.ts';
import { CookieClient } from '../test/lab/idp-fixtures.ts';
import { runApart } from './apart.ts';
import {
  goal,
  medianWithCi,
  percentiles,
  plain,
  ratioOf,
  round,
  type BenchContext,
  type Figures,
  type Percentiles,
} from './figures.ts';

const SQL = 'SELECT id, full_name FROM patients ORDER BY id LIMIT 5';

/** The person's browser, for the bench: the lab's login page driven over HTTP, then back to the app's loopback listener. */
function labBrowser(issuer: string) {
  return async (url: string): Promise<void> => {
    const client = new CookieClient();
    let next = url;
    for (let hop = 0; hop < 12; hop++) {
      if (new URL(next).origin !== new URL(issuer).origin) {
        await fetch(next);
        return;
      }
      const res = await client.request(next);
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        next = new URL(location, next).href;
        continue;
      }
      const page = await res.text();
      const m = /action="(\/interaction\/[^"]+\/login)"/.exec(page);
      if (!m) throw new Error(`unexpected page at ${next}: ${res.status}`);
      const posted = await client.request(new URL(m[1]!, next).href, {
        method: 'POST',
        form: new URLSearchParams({ username: 'alice', password: 'alice-lab-pw' }),
      });
      const loc = posted.headers.get('location');
      if (!loc) throw new Error(`login was not accepted (${posted.status})`);
      next = new URL(loc, next).href;
    }
    throw new Error('too many redirects');
  };
}

interface Sample {
  total: number;
  wire: Record<WireKind, number>;
  hops: Record<string, number>;
  /** Requests the call made to Vault: its login, creds and revocation hops. */
  vaultRequests: number;
  /**
   * The journal's sealed hold of the Vault token, made inside the login hop (before the credential is
   * asked for): in `hops.vault_login` and `hops.journal` both, so taken out of one of them once.
   */
  holdInHop: number;
  /** When the call started and its sample ended (performance.now()), to set V8's collections against. */
  span: [number, number];
  /** The SCRAM proofs of the call's logins, taken out of its database wait as own time (wire-time.ts `ownInWait`). */
  scram: number;
}

const VAULT_HOPS = new Set(['vault_login', 'vault_creds', 'revoke']);

/**
 * The hops whose work differs between the two Vault modes: the exchange (agent mode asks for the Vault
 * paths too), the login (jwt-login only), the credential and its revocation. Everything else a call
 * does (validate, classify, the statement, the role check, the journal, the record) is the same code.
 */
const MODE_HOPS = ['exchange', 'vault_login', 'vault_creds', 'revoke'];

/**
 * "Not slower" allows agent mode this much (2%) at the upper 95% bound: a true tie leaves the bound just
 * above 1, so a goal of exactly 1 would call a tie slower.
 */
export const AGENT_MODE_MARGIN = 1.02;

/** What the benchmark needs of the lab: its addresses (the lab in this process, or `npm run lab` in another). */
export type BrokerTarget = Pick<Lab, 'issuer' | 'vaultAddr'> & {
  pg: Pick<Lab['pg'], 'host' | 'port' | 'database'>;
};

export async function benchBroker(lab: BrokerTarget, o: { samples?: number } = {}) {
  const samples = o.samples ?? 200;
  const work = await mkdtemp(join(tmpdir(), 'cs-bench-broker-'));
  const policy = parsePolicy(
    readFileSync(new URL('../main/core/policy/demo-clinic.policy.jsonc', import.meta.url), 'utf8'),
  ).postgres as PostgresPolicy;
  const connection = { host: lab.pg.host, port: lab.pg.port, database: lab.pg.database };
  const secrets = new MemorySecretStore('benchmark');
  const audit = await AuditStore.open({ dataDir: work, secrets });
  // as the app opens it: sealing each call's Vault token with a key from the install's keys
  const journal = new SqliteCallJournal(
    work,
    audit.installKeys ? { sealKey: audit.installKeys.hmacKey } : {},
  );
  const auth = await AuthService.create({
    config: { issuer: lab.issuer, clientId: 'countersign-desktop', allowInsecureHttpForLoopbackOnly: true },
    secrets,
    openExternal: labBrowser(lab.issuer),
    audit,
  });
  await auth.signIn({ mode: 'browser' });
  const idp = createTokenExchanger({
    issuer: lab.issuer,
    clientId: 'countersign-desktop',
    client: () => auth.client(),
    onClientRejected: () => auth.clientRejected(),
    allowInsecureHttpForLoopbackOnly: true,
  });
  const vault = createVaultClient({ address: lab.vaultAddr });
  // The store and the journal themselves, with a stopwatch around each use (for own_by_stage).
  let appendMs = 0;
  let journalMs = 0;
  let holdMs = 0;
  // Everything the broker hands the store goes through, the call's secrets included: masking them is
  // part of the append's cost.
  const timedAudit: AuditSink = {
    refusals: (v, o) => audit.refusals(v, o),
    append: async (r, o) => {
      const t = performance.now();
      try {
        return await audit.append(r, o);
      } finally {
        appendMs += performance.now() - t;
      }
    },
  };
  // Each journal write's time goes to journalMs, and also to `also` (the hold's own share, below).
  const timed =
    <A extends unknown[]>(f: (...a: A) => void, also?: (ms: number) => void) =>
    (...a: A): void => {
      const t = performance.now();
      try {
        f(...a);
      } finally {
        const ms = performance.now() - t;
        journalMs += ms;
        also?.(ms);
      }
    };
  const timedJournal: CallJournal = {
    begin: timed((i, e) => journal.begin(i, e)),
    note: timed((i, u) => journal.note(i, u)),
    holdCredential: timed((i, t, k) => journal.holdCredential(i, t, k), (ms) => (holdMs += ms)),
    end: timed((i) => journal.end(i)),
  };
  const brokerWith = (extra: Partial<Parameters<typeof createBroker>[0]> = {}) =>
    createBroker({
      connectors: [createPostgresConnector({ policy, connection })],
      tokens: auth,
      idp,
      vault,
      audit: timedAudit,
      journal: timedJournal,
      ...extra,
    });
  const broker = brokerWith();
  const agentBroker = brokerWith({ vaultMode: 'agent' });
  const onResultBroker = brokerWith({ answer: 'on-result' });
  // Each call's record, found by its request id: written before the answer today, after it should the
  // broker answer first and revoke just after; either way a sample ends once its call is recorded.
  const waiting = new Map<number, (r: AuditRecord) => void>();
  const unsubscribe = audit.onAppend((r) => {
    const id = r.keys.mcp_request_id;
    const resolve = typeof id === 'number' ? waiting.get(id) : undefined;
    if (resolve) {
      waiting.delete(id as number);
      resolve(r);
    }
  });
  const recordOf = (requestId: number): Promise<AuditRecord> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no record for bench call ${requestId} within 30 s`)),
        30_000,
      );
      waiting.set(requestId, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
    });
  let id = 0;
  const req = (): ToolCallRequest => ({
    name: 'query',
    args: { sql: SQL },
    requestId: ++id,
    sessionId: 'bench',
    client: { name: 'bench' },
    signal: new AbortController().signal,
    progress: () => {},
  });

  let wire: Record<WireKind, number> = { idp: 0, vault: 0, db: 0 };
  let scram = 0;
  /** The last call's record as stored, and the last OBO the hand-made path obtained: what the duties below work on. */
  let lastRecord = '';
  let lastObo = '';
  let lastVaultToken = '';
  /** One call: `total` is until Claude has the answer; the sample ends when the call is recorded. */
  const oneCall = async (b = broker): Promise<Sample> => {
    const mine = (wire = { idp: 0, vault: 0, db: 0 });
    scram = 0;
    appendMs = journalMs = holdMs = 0;
    const request = req();
    const recorded = recordOf(request.requestId as number);
    const start = performance.now();
    const r = await b.callTool(request);
    const total = performance.now() - start;
    const atAnswer = { ...mine };
    const record = await recorded;
    // What the call left for the next turn (its journal entry's close, made once the answer is on its
    // way) is done now, before the next call starts, and counted in this call's time like the index
    // rows below: Countersign's own work, after the answer or not, and not hidden in the next call's wait.
    const journalBefore = journalMs;
    await new Promise((resolve) => setImmediate(resolve));
    const afterAnswerMs = journalMs - journalBefore;
    lastRecord = JSON.stringify(record);
    wire = { idp: 0, vault: 0, db: 0 };
    // The record's deferred index rows, written now so that their cost is this call's, not hidden
    // in the next call's network wait.
    const t = performance.now();
    audit.flushIndex();
    const indexMs = performance.now() - t;
    if (r.isError) throw new Error(`bench call failed: ${JSON.stringify(r.content)}`);
    const hops: Record<string, number> = { audit_append: appendMs, journal: journalMs, audit_index: indexMs };
    for (const h of record.hops) hops[h.name] = (hops[h.name] ?? 0) + h.ms;
    const vaultRequests = record.hops.filter((h) => VAULT_HOPS.has(h.name)).length;
    return { total: total + afterAnswerMs + indexMs, wire: atAnswer, hops, vaultRequests, holdInHop: holdMs, span: [start, performance.now()], scram };
  };

  // The same requests by hand, with what any client of these services must do and nothing else.
  const { plan, details } = await planPostgresCall(policy, 'query', { sql: SQL });
  const keyPair = auth.dpopKeyPair();
  const publicJwk = keyPair ? await exportJWK(keyPair.publicKey) : undefined;
  const tokenEndpoint = `${lab.issuer}/token`;
  const clientId = (await auth.client()).clientId;
  if (plan.credential.kind !== 'vault-database')
    throw new Error('the benchmark statement should need a database credential');
  const cred = plan.credential;
  const vaultUrl = lab.vaultAddr.replace(/\/+$/, '');
  // The hand-made path's own waits by kind, as call_tier1_wire splits the broker's: a request until its
  // answer is read, as main/core/wire-time.ts times the broker's; reading the JSON is the client's own.
  let byHand: Record<WireKind, number> = { idp: 0, vault: 0, db: 0 };
  const handWire = async <T>(kind: WireKind, f: () => Promise<T>): Promise<T> => {
    const t = performance.now();
    try {
      return await f();
    } finally {
      byHand[kind] += performance.now() - t;
    }
  };
  const handRequest = async (kind: 'idp' | 'vault', url: string, init: RequestInit = {}): Promise<Record<string, unknown>> => {
    const { status, text } = await handWire(kind, async () => {
      const res = await fetch(url, init);
      return { status: res.status, text: await res.text() };
    });
    const json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    if (status >= 400) throw new Error(`${url}: ${status} ${String(json.error ?? '')}`);
    return json;
  };
  const vaultPost = (path: string, body: unknown, token?: string) =>
    handRequest('vault', `${vaultUrl}/v1/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(token ? { 'x-vault-token': token } : {}) },
      body: JSON.stringify(body),
    });
  // The hand-made path's time by the kind of request it was working on (its waits included), so each
  // kind's own time can be set beside the broker's stage for it.
  let handSpan: Record<WireKind, number> = { idp: 0, vault: 0, db: 0 };
  let spanFrom = 0;
  const spanEnd = (kind: WireKind): void => {
    const now = performance.now();
    handSpan[kind] += now - spanFrom;
    spanFrom = now;
  };
  const hopsAlone = async (): Promise<{ total: number; wire: Record<WireKind, number>; span: Record<WireKind, number> }> => {
    byHand = { idp: 0, vault: 0, db: 0 };
    handSpan = { idp: 0, vault: 0, db: 0 };
    const start = (spanFrom = performance.now());
    const subject = await auth.getAccessToken();
    const proof =
      keyPair && publicJwk
        ? await new SignJWT({ htm: 'POST', htu: tokenEndpoint, jti: randomUUID() })
            .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: publicJwk })
            .setIssuedAt()
            .sign(keyPair.privateKey)
        : undefined;
    const form = new URLSearchParams({
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
      client_id: clientId,
      subject_token: subject,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      authorization_details: JSON.stringify(plan.authorizationDetails),
      ...(plan.audience ? { audience: plan.audience } : {}),
      ...(plan.resource ? { resource: plan.resource } : {}),
    });
    const ex = await handRequest('idp', tokenEndpoint, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', ...(proof ? { dpop: proof } : {}) },
      body: form,
    });
    const obo = String(ex.access_token);
    lastObo = obo;
    spanEnd('idp');
    const login = (await vaultPost(`auth/${cred.authMount}/login`, { role: cred.role, jwt: obo })) as { auth: { client_token: string } };
    const token = login.auth.client_token;
    lastVaultToken = token;
    const creds = (await handRequest('vault', `${vaultUrl}/v1/${cred.dbMount}/creds/${cred.dbRole}`, {
      headers: { 'x-vault-token': token },
    })) as { data: { username: string; password: string } };
    spanEnd('vault');
    const client = new pg.Client({
      ...connection,
      user: creds.data.username,
      password: creds.data.password,
      application_name: 'bench',
      // The same statements in one round trip, as the connector sends them (pg's pipeline mode).
      pipeline: true,
    } as pg.ClientConfig);
    // The SCRAM proof pg computes while logging in is the client's own work, as in the broker's call.
    timeScramProof(client, (ms) => (byHand.db -= ms));
    await handWire('db', async () => {
      await client.connect();
      await Promise.all([
        client.query('BEGIN READ ONLY'),
        client.query({ text: `DECLARE c NO SCROLL CURSOR FOR ${details.sql}`, values: details.params }),
        client.query(`FETCH ${details.limits.rowCap + 1} FROM c`),
        client.query('COMMIT'),
      ]);
      // Terminate, without waiting for the backend to exit: as libpq's PQfinish and the connector end theirs.
      leaveSession(client);
    });
    spanEnd('db');
    await vaultPost('auth/token/revoke-self', {}, token);
    spanEnd('vault');
    const check = new pg.Client({ ...connection, user: creds.data.username, password: creds.data.password });
    check.on('error', () => {});
    timeScramProof(check, (ms) => (byHand.db -= ms));
    const gone = await handWire('db', async () => {
      const g = await check.connect().then(
        () => false,
        () => true,
      );
      leaveSession(check);
      return g;
    });
    if (!gone) throw new Error('the role outlived its revocation');
    spanEnd('db');
    return { total: performance.now() - start, wire: byHand, span: handSpan };
  };

  // Countersign's duties beyond the requests, each by its library call alone (see the module comment).
  const discovery = (await (await fetch(`${lab.issuer}/.well-known/openid-configuration`)).json()) as { jwks_uri: string };
  const idpJwks = (await (await fetch(discovery.jwks_uri)).json()) as JSONWebKeySet;
  const idpKeys = createLocalJWKSet(idpJwks);
  // The same keys as node:crypto KeyObjects, imported once: for the by-hand signature check beside jose's.
  const handKeys = new Map<string, KeyObject>(idpJwks.keys.map((k) => [String(k.kid), createPublicKey({ key: k as JsonWebKey, format: 'jwk' })]));
  const dutyDb = new DatabaseSync(join(work, 'duties.db'));
  dutyDb.exec('PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE records (seq INTEGER PRIMARY KEY, body TEXT NOT NULL, hash TEXT NOT NULL)');
  const dutyInsert = dutyDb.prepare('INSERT INTO records (body, hash) VALUES (?, ?)');
  // The record's search rows: FTS5 with its own tokenizer over the record's text, and a row of its
  // filter columns under the indexes the store's filters read (those of `facets` in
  // main/core/audit/schema.ts, to be kept alike), in one transaction that is not synced (as the store
  // writes them).
  const dutyIndex = new DatabaseSync(join(work, 'duties-index.db'));
  dutyIndex.exec(`PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
    CREATE VIRTUAL TABLE fts USING fts5 (text, content = '');
    CREATE TABLE facets (seq INTEGER PRIMARY KEY, at_ms INTEGER, kind TEXT, outcome TEXT, tier INTEGER, tool TEXT, user_sub TEXT);
    CREATE INDEX facets_outcome ON facets (outcome, seq, tool, tier, kind, user_sub);
    CREATE INDEX facets_tool ON facets (tool, seq, outcome, tier, kind, user_sub);
    CREATE INDEX facets_user ON facets (user_sub, seq, outcome, tool, tier, kind);
    CREATE INDEX facets_tier ON facets (tier, seq, outcome, tool, kind, user_sub);
    CREATE INDEX facets_kind ON facets (kind, seq, outcome, tool, tier, user_sub);
    CREATE INDEX facets_at ON facets (at_ms);`);
  const ftsInsert = dutyIndex.prepare('INSERT INTO fts (rowid, text) VALUES (?, ?)');
  const facetInsert = dutyIndex.prepare('INSERT INTO facets (seq, at_ms, kind, outcome, tier, tool, user_sub) VALUES (?, ?, ?, ?, ?, ?, ?)');
  const dutyJournal = new DatabaseSync(join(work, 'duties-journal.db'));
  dutyJournal.exec('PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; CREATE TABLE calls (id TEXT PRIMARY KEY, body TEXT NOT NULL)');
  const journalIn = dutyJournal.prepare('INSERT INTO calls (id, body) VALUES (?, ?)');
  const journalHold = dutyJournal.prepare('UPDATE calls SET body = ? WHERE id = ?');
  const journalOut = dutyJournal.prepare('DELETE FROM calls WHERE id = ?');
  const sealKey = randomBytes(32);
  let duty = 0;
  const dutiesAlone = async (): Promise<Record<'parse' | 'verify' | 'commit' | 'index' | 'journal' | 'all' | 'signatureByHand', number>> => {
    // The record as the store holds it, in hand before the clock starts, as it is when its rows are written.
    const r = JSON.parse(lastRecord) as AuditRecord;
    const t0 = performance.now();
    await parseSql(SQL);
    const t1 = performance.now();
    await jwtVerify(lastObo, idpKeys, { issuer: lab.issuer });
    const t2 = performance.now();
    // The chained record: its SHA-256, then one synced commit.
    const hash = createHash('sha256').update(lastRecord).digest('hex');
    dutyDb.exec('BEGIN');
    const seq = Number(dutyInsert.run(lastRecord, hash).lastInsertRowid);
    dutyDb.exec('COMMIT');
    const t3 = performance.now();
    dutyIndex.exec('BEGIN');
    ftsInsert.run(seq, lastRecord);
    facetInsert.run(seq, Date.parse(r.at), r.kind, r.outcome, r.tier ?? null, r.tool ?? null, r.user?.sub ?? null);
    dutyIndex.exec('COMMIT');
    const t4 = performance.now();
    // The journal's least writes: the call in, its Vault token sealed (AES-256-GCM) so a restarted
    // core can revoke it, the call out.
    const id = `duty-${++duty}`;
    const entry = { tool: 'query', user: 'alice', requestId: duty };
    journalIn.run(id, JSON.stringify(entry));
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', sealKey, iv);
    cipher.setAAD(Buffer.from(id));
    const sealed = Buffer.concat([iv, cipher.update(lastVaultToken, 'utf8'), cipher.final(), cipher.getAuthTag()]).toString('base64');
    journalHold.run(JSON.stringify({ ...entry, sealedVaultToken: sealed }), id);
    journalOut.run(id);
    const t5 = performance.now();
    // Not a duty (outside `all`): the OBO's ES256 signature and its two JSON parts checked by hand with
    // node:crypto's synchronous verify, to set beside jose's jwtVerify above.
    const [h, p, sig] = lastObo.split('.') as [string, string, string];
    const header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8')) as { kid?: string };
    JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
    const signed = verifySignature('sha256', Buffer.from(`${h}.${p}`), { key: handKeys.get(String(header.kid))!, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url'));
    const t6 = performance.now();
    if (!signed) throw new Error("the OBO's signature did not verify by hand");
    return { parse: t1 - t0, verify: t2 - t1, commit: t3 - t2, index: t4 - t3, journal: t5 - t4, all: t5 - t0, signatureByHand: t6 - t5 };
  };

  observeWire((kind, ms) => {
    wire[kind] += ms;
    if (ms < 0) scram -= ms;
  });
  // V8's collections in this process, each as [start, end] (performance.now()), set against the calls below.
  const collections: Array<[number, number]> = [];
  const gcObserver = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) collections.push([e.startTime, e.startTime + e.duration]);
  });
  gcObserver.observe({ entryTypes: ['gc'] });
  try {
    for (let i = 0; i < 20; i += 1) {
      await oneCall();
      await oneCall(agentBroker);
      await oneCall(onResultBroker);
      await hopsAlone();
      await dutiesAlone();
    }
    const calls: Sample[] = [];
    const agentCalls: Sample[] = [];
    const onResultCalls: Sample[] = [];
    const alone: Array<Awaited<ReturnType<typeof hopsAlone>>> = [];
    const duties: Array<Awaited<ReturnType<typeof dutiesAlone>>> = [];
    for (let i = 0; i < samples; i += 1) {
      // Interleaved so all three see the same machine; the two modes take turns going first, so
      // neither gains from following the other (a connection or cache the previous call warmed).
      if (i % 2 === 0) {
        calls.push(await oneCall());
        agentCalls.push(await oneCall(agentBroker));
      } else {
        agentCalls.push(await oneCall(agentBroker));
        calls.push(await oneCall());
      }
      onResultCalls.push(await oneCall(onResultBroker));
      alone.push(await hopsAlone());
      duties.push(await dutiesAlone());
    }

    const throughput = async (concurrency: number): Promise<number> => {
      const n = Math.max(64, concurrency * 8);
      let next = 0;
      const start = performance.now();
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (next < n) {
            next += 1;
            const r = await broker.callTool(req());
            if (r.isError) throw new Error(`bench call failed: ${JSON.stringify(r.content)}`);
          }
        }),
      );
      return round(n / ((performance.now() - start) / 1000), 1);
    };
    // What a session's end waited for before the connector stopped waiting (docs/benchmarks.md, "How a
    // session ends"): from Terminate to PostgreSQL's close of a refused login, i.e. the backend's exit,
    // with pg's end(), which waits for it.
    const closeWaits: number[] = [];
    for (let i = 0; i < 40; i += 1) {
      const refused = new pg.Client({ ...connection, user: 'countersign-bench-nobody', password: 'not-a-password' });
      refused.on('error', () => {});
      await refused.connect().catch(() => {});
      const t = performance.now();
      await refused.end().catch(() => {});
      closeWaits.push(performance.now() - t);
    }
    const c1 = await throughput(1);
    const c8 = await throughput(8);
    const c32 = await throughput(32);

    const wireTotal = (s: { wire: Record<WireKind, number> }) => s.wire.idp + s.wire.vault + s.wire.db;
    /** A call's or the hand-made path's own time: its total minus its waits. */
    const ownOf = (s: { total: number; wire: Record<WireKind, number> }): number => Math.max(0, s.total - wireTotal(s));
    const legs = (s: Sample): number => MODE_HOPS.reduce((a, n) => a + (s.hops[n] ?? 0), 0);
    const own = calls.map(ownOf);
    const h = (s: Sample, ...names: string[]) => names.reduce((a, n) => a + (s.hops[n] ?? 0), 0);
    const stageOf = (of: Sample[], f: (s: Sample) => number): Percentiles => percentiles(of.map(f));
    const stage = (f: (s: Sample) => number): Percentiles => stageOf(calls, f);
    for (const e of gcObserver.takeRecords()) collections.push([e.startTime, e.startTime + e.duration]);
    const collected = calls.map(({ span: [from, to] }) =>
      collections.reduce((a, [gs, ge]) => a + Math.max(0, Math.min(ge, to) - Math.max(gs, from)), 0),
    );
    return {
      samples,
      call_tier1_total: percentiles(calls.map((s) => s.total)),
      call_tier1_total_answer_on_result: percentiles(onResultCalls.map((s) => s.total)),
      call_tier1_total_agent_mode: percentiles(agentCalls.map((s) => s.total)),
      // Each agent-mode call over the jwt-login call made beside it (same iteration, same machine).
      agent_vs_jwt_paired: medianWithCi(agentCalls.map((s, i) => s.total / calls[i]!.total)),
      mode_legs: {
        jwt_login: percentiles(calls.map(legs)).p50,
        agent: percentiles(agentCalls.map(legs)).p50,
      },
      agent_vs_jwt_legs_paired: medianWithCi(agentCalls.map((s, i) => legs(s) / legs(calls[i]!))),
      vault_requests_per_call: {
        jwt_login: percentiles(calls.map((s) => s.vaultRequests)).p50,
        agent: percentiles(agentCalls.map((s) => s.vaultRequests)).p50,
      },
      call_tier1_wire_vault_agent_mode: stageOf(agentCalls, (s) => s.wire.vault),
      call_tier1_wire: {
        idp: stage((s) => s.wire.idp),
        vault: stage((s) => s.wire.vault),
        db: stage((s) => s.wire.db),
        all: stage(wireTotal),
      },
      own_overhead: percentiles(own),
      own_overhead_share: percentiles(calls.map((s, i) => own[i]! / s.total)),
      own_by_stage: {
        // inside the exchange hop: getting the subject token, the DPoP proof, building the request, the OBO checks
        exchange: stage((s) => h(s, 'exchange') - s.wire.idp),
        // inside the Vault hops and revoke-self: building requests, reading the answers (the journal's
        // hold of the Vault token, made in the login hop, is the journal's)
        vault: stage((s) => h(s, 'vault_login', 'vault_creds', 'revoke') - s.wire.vault - s.holdInHop),
        // inside execute and the revoke check: the second parse and plan, the two logins' SCRAM proofs, rendering rows
        db: stage((s) => h(s, 'execute', 'revoke_check') - s.wire.db),
        // validate, classify, approval
        before: stage((s) => h(s, 'validate', 'classify', 'approval')),
        // the durable audit append (validation, redaction, hash chain, commit with fsync)
        audit_append: stage((s) => h(s, 'audit_append')),
        // the record's deferred index rows (filters, full-text search)
        audit_index: stage((s) => h(s, 'audit_index')),
        // the in-flight journal's writes (begin, a note per join key learnt, end), those made while a
        // request was on its way included (CallTrace.journalSoon)
        journal: stage((s) => h(s, 'journal')),
        // everything else outside the hops: the record, the answer, glue; below zero by as much of the
        // stages above as was done while a request was on its way
        outside_hops: stage((s) => s.total - Object.values(s.hops).reduce((a, b) => a + b, 0) + s.holdInHop),
      },
      hops_alone_total: percentiles(alone.map((a) => a.total)),
      hops_alone_own: percentiles(alone.map(ownOf)),
      hops_alone_own_by_kind: {
        idp: percentiles(alone.map((a) => a.span.idp - a.wire.idp)).p50,
        vault: percentiles(alone.map((a) => a.span.vault - a.wire.vault)).p50,
        db: percentiles(alone.map((a) => a.span.db - a.wire.db)).p50,
      },
      duties_alone: {
        parse: percentiles(duties.map((d) => d.parse)).p50,
        verify: percentiles(duties.map((d) => d.verify)).p50,
        commit: percentiles(duties.map((d) => d.commit)).p50,
        index: percentiles(duties.map((d) => d.index)).p50,
        journal: percentiles(duties.map((d) => d.journal)).p50,
        all: percentiles(duties.map((d) => d.all)).p50,
      },
      obo_signature_by_hand: percentiles(duties.map((d) => d.signatureByHand)),
      own_floor: percentiles(alone.map((a, i) => ownOf(a) + duties[i]!.all)),
      // per iteration, the floor's share of a call made with nothing but the floor's own time: the
      // hand-made path with the duties added
      own_floor_share_per_call: percentiles(alone.map((a, i) => (ownOf(a) + duties[i]!.all) / (a.total + duties[i]!.all))),
      // per iteration, the hand-made path with the duties' time and the database wait the broker's call
      // of the same iteration added over it (its catalogue check), over the hand-made path alone
      total_floor_vs_hops_alone_per_call: percentiles(alone.map((a, i) => (a.total + duties[i]!.all + calls[i]!.wire.db - a.wire.db) / a.total)),
      hops_alone_wire: {
        idp: percentiles(alone.map((a) => a.wire.idp)).p50,
        vault: percentiles(alone.map((a) => a.wire.vault)).p50,
        db: percentiles(alone.map((a) => a.wire.db)).p50,
      },
      scram_in_call: percentiles(calls.map((c) => c.scram)),
      pg_close_wait: percentiles(closeWaits.slice(5)),
      throughput_calls_per_s: { c1, c8, c32 },
      gc_in_call: {
        share_of_calls: round(collected.filter((ms) => ms > 0).length / collected.length, 3),
        mean_ms: round(collected.reduce((a, ms) => a + ms, 0) / collected.length, 3),
        p99_ms: percentiles(collected).p99,
      },
    };
  } finally {
    gcObserver.disconnect();
    observeWire(undefined);
    unsubscribe();
    await broker.close();
    await agentBroker.close();
    await onResultBroker.close();
    await vault.close();
    await auth.signOut().catch(() => {});
    await audit.close();
    journal.close();
    dutyDb.close();
    dutyJournal.close();
    await rm(work, { recursive: true, force: true });
  }
}

const CHILD = fileURLToPath(new URL('./fixtures/broker-child.ts', import.meta.url));

/**
 * `benchBroker` in a process of its own (bench/fixtures/broker-child.ts), started with the core's Node
 * options: the lab's IdP and Vault stand-in answer from this process, as servers elsewhere would.
 */
async function benchBrokerApart(lab: BrokerTarget, samples: number): Promise<Awaited<ReturnType<typeof benchBroker>>> {
  const target: BrokerTarget = { issuer: lab.issuer, vaultAddr: lab.vaultAddr, pg: { host: lab.pg.host, port: lab.pg.port, database: lab.pg.database } };
  return runApart(CHILD, { BENCH_BROKER_TARGET: JSON.stringify(target), BENCH_BROKER_SAMPLES: String(samples) }, 'the broker bench');
}

/** The broker's figures for bench/run.ts. */
export async function bench(ctx: BenchContext): Promise<Figures> {
  // BENCH_BROKER_SAMPLES: more calls per mode narrow the paired interval (it shrinks as 1/√n).
  const r = await benchBrokerApart(await ctx.lab(), Number(process.env.BENCH_BROKER_SAMPLES ?? 200));
  const detail = Object.fromEntries(Object.entries(r.own_by_stage).map(([k, p]) => [k, p.p50]));
  return {
    call_tier1_total: plain(
      r.call_tier1_total,
      'ms',
      `a tier-1 query end to end through the broker with the file-backed audit store, the journal and the signed-in token source (${r.samples} calls)`,
    ),
    call_tier1_total_answer_on_result: plain(
      r.call_tier1_total_answer_on_result,
      'ms',
      `the same tier-1 query with the broker answering as soon as the statement's result is in hand and revoking, checking and recording just after (answer: on-result), interleaved with call_tier1_total (${r.samples} calls each)`,
    ),
    answer_on_result_vs_after_record: goal(
      ratioOf(r.call_tier1_total_answer_on_result.p50, r.call_tier1_total.p50),
      'ratio',
      '<=',
      0.85,
      'call_tier1_total_answer_on_result over call_tier1_total (p50): answering on the result is worth its weaker guarantee only at 15 % or more off a tier-1 answer',
    ),
    call_tier1_total_agent_mode: plain(
      r.call_tier1_total_agent_mode,
      'ms',
      `the same tier-1 query in Vault's native agent mode (one Vault request fewer: no login; the lease revoked with the OBO instead of revoke-self), interleaved with call_tier1_total (${r.samples} calls each); the lab's Vault stand-in, not Vault Enterprise`,
    ),
    agent_mode_vs_jwt_login: plain(
      ratioOf(r.call_tier1_total_agent_mode.p50, r.call_tier1_total.p50),
      'ratio',
      'call_tier1_total_agent_mode over call_tier1_total (p50)',
    ),
    agent_mode_vs_jwt_login_paired: plain(
      r.agent_vs_jwt_paired,
      'ratio',
      `each agent-mode call's time over the jwt-login call made beside it (same iteration; the two take turns going first), median and its 95% confidence interval over ${r.samples} pairs`,
    ),
    call_tier1_mode_legs: plain(
      r.mode_legs,
      'ms',
      "the part of those calls that differs between the modes, at p50: the exchange, the Vault login (jwt-login only), the credential and its revocation, from each call's record",
    ),
    agent_mode_vs_jwt_login_legs_paired: plain(
      r.agent_vs_jwt_legs_paired,
      'ratio',
      'call_tier1_mode_legs of each agent-mode call over the jwt-login call beside it: median and its 95% confidence interval',
    ),
    agent_mode_not_slower: goal(
      r.agent_vs_jwt_paired.ci95_high,
      'ratio',
      '<=',
      AGENT_MODE_MARGIN,
      `upper 95% bound of agent_mode_vs_jwt_login_paired (${r.samples} pairs): agent mode is not slower than jwt-login when even this bound is within ${Math.round((AGENT_MODE_MARGIN - 1) * 100)}%; above it, the pairs do not show it (slower, or too noisy to tell: see the low bound)`,
    ),
    vault_requests_per_call: plain(
      r.vault_requests_per_call,
      'count',
      "requests to Vault in one call (p50), counted from its record's hops: jwt-login logs in, reads creds and revokes itself; agent mode reads creds with the OBO and revokes the lease",
    ),
    call_tier1_wire_vault_agent_mode: plain(
      r.call_tier1_wire_vault_agent_mode,
      'ms',
      'the waits on Vault inside an agent-mode call (creds and the lease revocation), against call_tier1_wire.vault (login, creds, revoke-self)',
    ),
    call_tier1_wire: plain(
      Object.fromEntries(Object.entries(r.call_tier1_wire).map(([k, p]) => [k, p.p50])),
      'ms',
      'the network waits inside that call at p50, by kind: HTTP to the IdP and to Vault until the answer is in, PostgreSQL connect (less the SCRAM proof pg computes in it, which is own time) and queries',
    ),
    own_overhead: plain(
      r.own_overhead,
      'ms',
      "Countersign's own time in a call: its total minus every network wait",
    ),
    own_overhead_share_p50: goal(
      r.own_overhead_share.p50,
      'share',
      '<=',
      0.05,
      "Countersign's own time as a share of a tier-1 call (p50)",
    ),
    own_overhead_share_p99: goal(
      r.own_overhead_share.p99,
      'share',
      '<=',
      0.05,
      "Countersign's own time as a share of a tier-1 call (p99)",
    ),
    own_by_stage: plain(
      detail,
      'ms',
      'where the own time goes at p50: inside the exchange, the Vault hops, the database hops, before them (validate, classify), outside the hops (journal, audit append, glue)',
    ),
    hops_alone_total: plain(
      r.hops_alone_total,
      'ms',
      'the same requests made by hand with what a client must do (DPoP proof, form, Vault API, the same statements, the role check), no broker, interleaved (baseline)',
    ),
    hops_alone_wire: plain(
      r.hops_alone_wire,
      'ms',
      'the same waits in the hand-made path at p50, by kind (to set beside call_tier1_wire: a difference there is a request or a statement the broker makes and the hand-made path does not)',
    ),
    hops_alone_own: plain(
      r.hops_alone_own,
      'ms',
      "the hand-made path's own time: its total minus its waits (what any client spends on the same requests outside the network, reading the answers included)",
    ),
    hops_alone_own_by_kind: plain(
      r.hops_alone_own_by_kind,
      'ms',
      "hops_alone_own at p50 by the kind of request the hand-made path was working on: the IdP (the subject token, the DPoP proof, the form, reading the answer), Vault (login, creds, revoke-self) and PostgreSQL (the session, its statements, the role check); to set beside own_by_stage's exchange (less the OBO's check in duties_alone.verify), vault and db",
    ),
    duties_alone: plain(
      r.duties_alone,
      'ms',
      "Countersign's duties beyond the requests, each by the library call that does it alone, interleaved with the calls, at p50: the statement's parse (libpg-query), the OBO's check (jose jwtVerify, keys in hand), the chain (the record's SHA-256 and one synced commit of it: node:sqlite, WAL, FULL), its search rows (FTS5 over its text and a row under the filter indexes, one unsynced commit), the journal's three least writes (in, the Vault token sealed with AES-256-GCM, out)",
    ),
    obo_signature_by_hand: plain(
      r.obo_signature_by_hand,
      'ms',
      "the OBO's ES256 signature and its header and claims parsed, checked with node:crypto's synchronous verify (the IdP's keys imported once), interleaved with duties_alone: to set beside duties_alone.verify, jose's jwtVerify (WebCrypto, and the claim checks). A detail: not adopted, since it would put hand-written JWT checks where jose's are",
    ),
    own_floor: plain(
      r.own_floor,
      'ms',
      'hops_alone_own plus duties_alone, per iteration: the least own time any client doing the same requests and duties with the same libraries spends on this machine',
    ),
    own_floor_share: plain(
      ratioOf(r.own_floor.p50, r.call_tier1_total.p50),
      'share',
      "own_floor over call_tier1_total (p50): the floor under own_overhead_share_p50 (goal 0.05) on this machine; what lies between the two is the broker's own code",
    ),
    own_floor_share_p99: plain(
      r.own_floor_share_per_call.p99,
      'share',
      "per iteration, own_floor over the hand-made path's total with the duties' time added (p99): the floor under own_overhead_share_p99 (goal 0.05) on this machine",
    ),
    total_vs_hops_alone: goal(
      ratioOf(r.call_tier1_total.p50, r.hops_alone_total.p50),
      'ratio',
      '<=',
      1.1,
      'a tier-1 call through the broker over the same requests made by hand (p50)',
    ),
    total_floor_vs_hops_alone: plain(
      r.total_floor_vs_hops_alone_per_call.p50,
      'ratio',
      "per iteration, the hand-made path with Countersign's duties and the database wait the broker adds (its catalogue check) over the hand-made path (p50): the floor under total_vs_hops_alone (goal 1.1) on this machine; what lies between the two is the broker's own code",
    ),
    scram_in_call: plain(
      r.scram_in_call,
      'ms',
      "the SCRAM proofs pg computes for a call's two logins (PBKDF2 and the proof), timed in pg's handler of the server's challenge: own time, in own_by_stage.db, not in call_tier1_wire.db (a detail)",
    ),
    pg_close_wait: plain(
      r.pg_close_wait,
      'ms',
      "from Terminate to PostgreSQL's close of a refused login's session (the backend's exit), waited for with pg's end(), 35 sessions: what each of a call's two session ends waited for before the connector ended sessions without waiting (a detail; no call waits for it now)",
    ),
    throughput_calls_per_s: plain(
      r.throughput_calls_per_s,
      'per_s',
      'completed tier-1 calls per second at concurrency 1, 8 and 32 (each mints and drops a PostgreSQL role)',
    ),
    gc_in_call: plain(
      r.gc_in_call,
      'ms',
      "V8's collections in the broker's process during the call_tier1_total calls (with the core's Node options): the share of calls one overlapped, and the time they overlapped a call, mean and p99 (a detail: a collection during a network wait costs the call nothing)",
    ),
  };
}
