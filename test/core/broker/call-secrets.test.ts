/**
 * One scrubber for what a call records and answers (docs/audit.md "Redaction at write"), through the
 * whole core (startCore) on the lab: the configuration file read by its schema, the real audit store,
 * the IdP, the Vault stand-in and PostgreSQL. Sign-in is the one part replaced: a session holding a
 * token the test got from the lab IdP over HTTP. One test per way a call's secret could get out: the
 * target echoing the database password (raw, hex, base64), arguments carrying the user's token (raw,
 * hex, base64), arguments kept as an HMAC by configuration, and `onSecret: 'refuse'`.
 * What is not claimed: a secret cut into pieces across fields or strings.
 */
import { createHmac } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalJson } from '../../../common/canonical-json.ts';
import { labAppConfig } from '../../../lab/app-config.ts';
import { startLab, type Lab } from '../../../lab/index.ts';
import { creationStatement, DATABASE_CONNECTION, DATABASE_MOUNT, PER_CALL_TTL, REVOCATION_STATEMENT } from '../../../lab/vault/lab-config.ts';
import type { Core } from '../../../main/core/app.ts';
import { loadAppConfig, type AppConfigInput } from '../../../main/core/config/config.ts';
import { signedInAs, startLabCore, stopAll } from '../../helpers/lab-core.ts';
import { artifactBytes, describeHits, scanForSecrets, type Artifact } from '../../helpers/secret-scan.ts';
import { labTokenSource } from './fixtures.ts';
import { call } from './lab.ts';

let lab: Lab;
let home: string;
let token: Awaited<ReturnType<typeof labTokenSource>>;
const logs: string[] = [];
const log = { info: (m: string) => logs.push(m), warn: (m: string) => logs.push(m), error: (m: string) => logs.push(m) };

const text = (r: CallToolResult) => r.content.map((c) => (c.type === 'text' ? c.text : '')).join('');
const hex = (s: string) => Buffer.from(s).toString('hex');
const b64 = (s: string) => Buffer.from(s).toString('base64');

/** A core on the lab whose configuration file adds `audit`. */
async function coreWith(name: string, audit: AppConfigInput['audit']): Promise<Core> {
  const dir = join(home, name);
  const file = join(home, `${name}.config.json`);
  await writeFile(file, JSON.stringify(labAppConfig(lab, { audit })));
  return startLabCore({ lab, home: dir, config: await loadAppConfig(file), createAuth: async () => signedInAs(token), log });
}

/** Everything the core left that a secret could be in: its data directory (audit.db and its WAL, the journal), its log, the answers. */
function leftBehind(core: Core, answers: CallToolResult[]): Artifact[] {
  return [
    { kind: 'dir', path: core.paths.dataDir },
    { kind: 'text', name: 'core log', text: logs.join('\n') },
    { kind: 'text', name: 'MCP answers', text: JSON.stringify(answers) },
  ];
}

/** Sets the creation statements of the lab Vault's `clinic-read` database role, as its administrator would. */
async function clinicReadRole(creation: string[]): Promise<void> {
  const res = await fetch(`${lab.vaultAddr}/v1/${DATABASE_MOUNT}/roles/clinic-read`, {
    method: 'POST',
    headers: { 'x-vault-token': lab.vault.rootToken, 'content-type': 'application/json' },
    body: JSON.stringify({
      db_name: DATABASE_CONNECTION,
      creation_statements: creation,
      revocation_statements: [REVOCATION_STATEMENT],
      default_ttl: PER_CALL_TTL,
      max_ttl: PER_CALL_TTL,
    }),
  });
  expect(res.status).toBeLessThan(300);
}

function lastCall(core: Core) {
  return core.audit.page({ filter: { kind: ['tool_call'] }, limit: 1 }, { withTotal: false }).records[0]!;
}

beforeAll(async () => {
  [lab, home] = await Promise.all([startLab({ log: () => {} }), mkdtemp(join(tmpdir(), 'countersign-call-secrets-'))]);
  token = await labTokenSource(lab.idp, 'alice');
}, 60_000);

afterAll(async () => {
  await stopAll([lab], home);
}, 60_000);

describe('with the default redaction and hmacArgs from the configuration file', () => {
  let core: Core;
  beforeAll(async () => {
    core = await coreWith('masking', { redaction: { hmacArgs: ['params'] } });
  }, 60_000);
  afterAll(async () => {
    await core?.stop();
  });

  it("masks a result that echoes the call's own database password, raw, hex and base64, in the answer and the record", async () => {
    // A Vault role whose creation statement also writes the password it was given where the role can read it.
    const echo = `INSERT INTO public.appointments (patient_id, starts_at, reason) VALUES ((SELECT min(id) FROM public.patients WHERE NOT vip), now(), 'pw {{password}} hex ' || encode(convert_to('{{password}}', 'UTF8'), 'hex') || ' b64 ' || encode(convert_to('{{password}}', 'UTF8'), 'base64'))`;
    const admin = new pg.Client({ connectionString: lab.pg.adminUrl });
    await admin.connect();
    let answer: CallToolResult;
    let row: { reason: string } | undefined;
    try {
      await admin.query(`GRANT USAGE ON SCHEMA public TO "${lab.pg.managementUser}"`);
      await admin.query(`GRANT SELECT, INSERT ON patients, appointments TO "${lab.pg.managementUser}"`);
      await admin.query(`ALTER ROLE "${lab.pg.managementUser}" BYPASSRLS`);
      await clinicReadRole([creationStatement('clinic_reader'), echo]);
      answer = await core.broker.callTool(call('query', { sql: 'SELECT id, reason FROM appointments ORDER BY id DESC LIMIT 1' }));
      [row] = (await admin.query<{ reason: string }>('SELECT reason FROM appointments ORDER BY id DESC LIMIT 1')).rows;
    } finally {
      await clinicReadRole([creationStatement('clinic_reader')]);
      await admin.query(`ALTER ROLE "${lab.pg.managementUser}" NOBYPASSRLS`);
      await admin.query(`REVOKE SELECT, INSERT ON patients, appointments FROM "${lab.pg.managementUser}"`);
      await admin.query(`REVOKE USAGE ON SCHEMA public FROM "${lab.pg.managementUser}"`);
      await admin.end();
    }
    const password = /^pw (\S+) hex/.exec(row!.reason)?.[1] ?? expect.fail(`${row!.reason} / ${text(answer!)}`);
    expect(row!.reason).toContain(hex(password));

    expect(answer.isError, text(answer)).toBeFalsy();
    expect(text(answer)).toContain('pw [redacted] hex [redacted] b64 [redacted]');
    const record = lastCall(core);
    expect(record.outcome).toBe('success');
    expect(record.hops.find((h) => h.name === 'execute')?.detail).toMatch(/carried this call's own credential; masked/);
    core.audit.flushIndex();
    const artifacts = leftBehind(core, [answer]);
    expect(await artifactBytes(artifacts)).toBeGreaterThan(10_000);
    const hits = await scanForSecrets({ db_password: password }, artifacts);
    expect(hits, describeHits(hits)).toEqual([]);
  });

  it("masks arguments carrying the user's own access token, raw, hex or base64, in the record and the answer", async () => {
    const t = token.accessToken;
    const sql = `SELECT '${hex(t)}' AS h, '${b64(t)}' AS b, '${t}' AS r`;
    const answer = await core.broker.callTool(call('query', { sql }));
    expect(answer.isError, text(answer)).toBeFalsy();
    expect(text(answer)).not.toContain(hex(t));
    const record = lastCall(core);
    expect(record.args?.sql).toBe(`SELECT '[redacted]' AS h, '[redacted]' AS b, '[redacted]' AS r`);
    expect(record.redacted).toContain('/args/sql: known secret');
    const hits = await scanForSecrets({ user_access_token: t }, leftBehind(core, [answer]));
    expect(hits, describeHits(hits)).toEqual([]);
  });

  it('keeps the arguments the configuration names as an HMAC under the install key, and nowhere in plain', async () => {
    const probe = 'MRN-hmac-probe-7731';
    const answer = await core.broker.callTool(call('query', { sql: 'SELECT id FROM patients WHERE mrn = $1', params: [probe] }));
    expect(answer.isError, text(answer)).toBeFalsy();
    const record = lastCall(core);
    const expected = `hmac-sha256:${createHmac('sha256', core.audit.installKeys!.hmacKey).update(canonicalJson([probe])).digest('hex')}`;
    expect(record.args?.params).toBe(expected);
    expect(record.args?.sql).toBe('SELECT id FROM patients WHERE mrn = $1');
    const hits = await scanForSecrets({ probe }, [{ kind: 'dir', path: core.paths.dataDir }]);
    expect(hits, describeHits(hits)).toEqual([]);
  });
});

describe("with redaction.onSecret 'refuse' in the configuration file", () => {
  let core: Core;
  beforeAll(async () => {
    core = await coreWith('refusing', { redaction: { onSecret: 'refuse' } });
  }, 60_000);
  afterAll(async () => {
    await core?.stop();
  });

  it('answers AUDIT_REDACTION_REFUSED without the result when the record carries what only the call knew to be a secret, records the call without its arguments, and records the next call as usual', async () => {
    const t = token.accessToken;
    const refused = await core.broker.callTool(call('query', { sql: `SELECT id, '${b64(t)}' AS note FROM patients LIMIT 1` }));
    expect(refused.isError).toBe(true);
    expect(text(refused)).toMatch(/\/args\/sql: known secret.*\[AUDIT_REDACTION_REFUSED\]$/s);
    const stand = lastCall(core);
    expect(stand.error?.code).toBe('AUDIT_REDACTION_REFUSED');
    expect(stand.args).toBeUndefined();
    expect(stand.keys.obo_jti).toBeTruthy();
    expect(stand.hops.map((h) => h.name)).toContain('execute');
    expect(stand.hops.every((h) => h.detail === undefined)).toBe(true);

    const next = await core.broker.callTool(call('query', { sql: 'SELECT id FROM patients LIMIT 1' }));
    expect(next.isError, text(next)).toBeFalsy();
    const after = lastCall(core);
    expect(after.seq).toBeGreaterThan(stand.seq);
    expect(after.args?.sql).toBe('SELECT id FROM patients LIMIT 1');
    expect(after.outcome).toBe('success');

    const hits = await scanForSecrets({ user_access_token: t }, leftBehind(core, [refused, next]));
    expect(hits, describeHits(hits)).toEqual([]);
  });

  it('refuses before any exchange a call whose arguments carry a credential-shaped string, and records it without them', async () => {
    const t = token.accessToken;
    const calls = token.calls;
    const refused = await core.broker.callTool(call('query', { sql: `SELECT id FROM patients WHERE full_name = '${t}'` }));
    expect(refused.isError).toBe(true);
    expect(text(refused)).toMatch(/\/args\/sql: jwt.*so it was not run\. \[AUDIT_REDACTION_REFUSED\]$/s);
    expect(token.calls).toBe(calls);
    const stand = lastCall(core);
    expect(stand.error?.code).toBe('AUDIT_REDACTION_REFUSED');
    expect(stand.hops.map((h) => `${h.name}:${h.outcome}`)).toEqual(['validate:error']);
    expect(stand.keys.obo_jti).toBeUndefined();
    expect(stand.args).toBeUndefined();
    const hits = await scanForSecrets({ user_access_token: t }, leftBehind(core, [refused]));
    expect(hits, describeHits(hits)).toEqual([]);
  });
});
