import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KnownSecrets, MASK, Redactor } from '../../../main/core/audit/redact.ts';
import { describeHits, scanForSecrets, secretForms } from '../../helpers/secret-scan.ts';

const FAKE_VAULT_TOKEN = ['hvs', 'CAESIB2y0aGqN0C9NMmD1n4J8mIGHGXWkP'].join('.');

const JWT = 'eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImV4cCI6MX0.Zm9vYmFyYmF6cXV4';
const JWE = 'eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.OKOawDo13gRp2oj.48V1_ALb6US04U3b.5eym8TW_c8SuK0ltJ3rpYIzOe.XFBoMYUZodetZdvTiFvSkQ';

describe('redaction at write', () => {
  const r = new Redactor({}, randomBytes(32));

  const cases: [string, Record<string, unknown>, string][] = [
    ['a JWT anywhere in a nested argument', { args: { deep: [{ note: `token=${JWT}` }] } }, JWT],
    ['a JWE', { summary: `got ${JWE}` }, JWE],
    ['a Bearer authorization value', { error: { code: 'X', message: 'sent Authorization: Bearer abc.def-ghi_jkl~123' } }, 'abc.def-ghi_jkl~123'],
    ['a DPoP authorization value', { summary: 'DPoP Zm9vYmFyYmF6cXV4eHl6' }, 'Zm9vYmFyYmF6cXV4eHl6'],
    // A made-up Vault token, assembled at run time so the source holds nothing shaped like a real one.
    ['a Vault service token', { hops: [{ detail: `X-Vault-Token: ${FAKE_VAULT_TOKEN}` }] }, FAKE_VAULT_TOKEN],
    ['a Vault batch token', { summary: 'hvb.AAAAAQJZpk9u1cXWgWv1w4mDm8Fz' }, 'hvb.AAAAAQJZpk9u1cXWgWv1w4mDm8Fz'],
    ['a legacy Vault token', { summary: 'token s.Qf1s5zigZ4OX6akYjQXJC1jY used' }, 's.Qf1s5zigZ4OX6akYjQXJC1jY'],
    ['a password field', { args: { password: 'correct horse battery staple' } }, 'correct horse battery staple'],
    ['a client_secret field', { args: { config: { client_secret: 'cs-1234567890' } } }, 'cs-1234567890'],
    ['an api_key field', { args: { API_KEY: 'k-1234567890' } }, 'k-1234567890'],
    ['a refresh_token field', { args: { refresh_token: 'opaque-refresh-value' } }, 'opaque-refresh-value'],
    ['a code_verifier field', { args: { code_verifier: 'verifier-value-43-chars' } }, 'verifier-value-43-chars'],
  ];
  for (const [what, record, secret] of cases) {
    it(`masks ${what} and says where, never what`, () => {
      const { value, redacted } = r.scrubRecord(record);
      const text = JSON.stringify(value);
      expect(text).not.toContain(secret);
      expect(text).toContain(MASK);
      expect(redacted.length).toBeGreaterThan(0);
      expect(redacted.join(' ')).not.toContain(secret);
    });
  }

  it('masks a value the caller names as a known secret, in any field and shape', () => {
    const pw = 'Xy9-per-call-db-password';
    const { value, redacted } = r.scrubRecord({ summary: `connect user=v-role password=${pw}`, args: { list: [`${pw}`] } }, [pw]);
    expect(JSON.stringify(value)).not.toContain(pw);
    expect(redacted).toEqual(['/summary: known secret', '/args/list/0: known secret']);
  });

  it('masks a known secret in every form the secret scan looks for except UTF-16, whole or inside a longer value', async () => {
    const pw = 'A1b2C3d4-per-call"pw/x+y';
    const forms = secretForms(pw).filter((f) => !f.encoding.startsWith('utf16'));
    const basic = Buffer.from(`v-role:${pw}`).toString('base64');
    const record = { args: { each: forms.map((f) => `<${f.bytes.toString('latin1')}>`), basic: `Authorization: Basic ${basic}`, in_b64: Buffer.from(`x${pw}yz`).toString('base64url') } };
    const { value, redacted } = r.scrubRecord(record, [pw]);
    const hits = await scanForSecrets({ pw }, [{ kind: 'text', name: 'record', text: JSON.stringify(value) }]);
    expect(hits, describeHits(hits)).toEqual([]);
    expect(redacted.filter((p) => p.endsWith('known secret')).length).toBeGreaterThanOrEqual(forms.length);
  });

  it("masks a JWT's payload and signature segments on their own, not its shared header", () => {
    const k = new KnownSecrets();
    k.add(JWT);
    const [header, payload, signature] = JWT.split('.');
    expect(k.mask(`p=${payload} s=${signature}`)).toBe(`p=${MASK} s=${MASK}`);
    expect(k.mask(`h=${header}`)).toBe(`h=${header}`);
  });

  it('masks a secret in every form whether its forms were worked out in a later turn or at its first use', async () => {
    const k = new KnownSecrets();
    k.add(JWT);
    await new Promise((r) => setImmediate(r));
    k.add(FAKE_VAULT_TOKEN);
    const text = `a=${Buffer.from(JWT).toString('base64')} b=${encodeURIComponent(FAKE_VAULT_TOKEN)} c=${Buffer.from(FAKE_VAULT_TOKEN).toString('hex')}`;
    expect(k.mask(text)).toBe(`a=${MASK} b=${MASK} c=${MASK}`);
    const later = new KnownSecrets();
    later.add(FAKE_VAULT_TOKEN);
    expect(later.maskDeep({ rows: [{ note: FAKE_VAULT_TOKEN.toUpperCase() }, { note: Buffer.from(FAKE_VAULT_TOKEN).toString('base64url') }] })).toEqual({
      value: { rows: [{ note: FAKE_VAULT_TOKEN.toUpperCase() }, { note: MASK }] },
      masked: true,
    });
    await new Promise((r) => setImmediate(r));
    expect(later.mask(`x ${FAKE_VAULT_TOKEN} y`)).toBe(`x ${MASK} y`);
  });

  it('ignores values too short to mask safely', () => {
    const k = new KnownSecrets();
    k.add('abc');
    expect(k.size).toBe(0);
    expect(k.mask('abcabc')).toBe('abcabc');
  });

  it('leaves ordinary text, join keys and RAR alone', () => {
    const rec = {
      summary: 'i.e. s.t. the update ran, see database/creds/clinic-read/abc',
      keys: { lease_id: 'database/creds/clinic-read/Zx81', obo_jti: 'a1b2c3', vault_accessor: 'hmac-free-accessor' },
      authorization_details: [{ type: 'postgres', actions: ['update'] }],
      args: { sql: "UPDATE appointments SET status = 'done' WHERE id = 4", token_count: 5 },
    };
    const { value, redacted } = r.scrubRecord(rec);
    expect(redacted).toEqual([]);
    expect(value).toEqual(rec);
  });

  it("masks a call's secret in the member names of what it answers (a column the statement named), and says so", () => {
    const k = new KnownSecrets();
    k.add(FAKE_VAULT_TOKEN);
    const { value, masked } = k.maskDeep({ rows: [{ [FAKE_VAULT_TOKEN]: 1, id: 7 }], columns: [FAKE_VAULT_TOKEN, 'id'] });
    expect(masked).toBe(true);
    expect(JSON.stringify(value)).not.toContain(FAKE_VAULT_TOKEN);
    expect(value).toEqual({ rows: [{ [MASK]: 1, id: 7 }], columns: [MASK, 'id'] });
  });

  it("masks a secret used as a member's name, at any depth, and keeps every member", async () => {
    const pw = 'S3cr3t-P@ss-w0rd!';
    const record = {
      args: {
        jwt_as_key: { [JWT]: 1 },
        vault_as_key: { nested: { [FAKE_VAULT_TOKEN]: 'x' } },
        known_as_key: { [pw]: true, [`${pw}!`]: 2, [MASK]: 'already named so' },
      },
    };
    const { value, redacted } = r.scrubRecord(record, [pw]);
    const text = JSON.stringify(value);
    const hits = await scanForSecrets({ pw, jwt: JWT, vault: FAKE_VAULT_TOKEN }, [{ kind: 'text', name: 'record', text }]);
    expect(hits, describeHits(hits)).toEqual([]);
    expect(redacted.join(' ')).not.toContain(pw);
    expect(redacted).toContain('/args/jwt_as_key: jwt (in a member name)');
    const args = value.args as Record<string, Record<string, unknown>>;
    // Three names that mask alike are all kept, beside the one already named so.
    expect(Object.values(args.known_as_key!).sort()).toEqual([2, 'already named so', true].sort());
    expect(Object.keys(args.known_as_key!)).toHaveLength(3);
    expect(Object.values((args.vault_as_key!.nested as Record<string, unknown>) ?? {})).toEqual(['x']);
  });

  it("refuses in refuse mode a record whose only secret is a member's name", () => {
    const strict = new Redactor({ onSecret: 'refuse' });
    expect(strict.refusals({ args: { [JWT]: 1 } })).toEqual(['/args: jwt (in a member name)']);
    expect(() => strict.scrubRecord({ args: { [JWT]: 1 } })).toThrow(expect.objectContaining({ code: 'AUDIT_REDACTION_REFUSED' }));
  });

  it('refuses the record in refuse mode instead of masking', () => {
    const strict = new Redactor({ onSecret: 'refuse' });
    expect(() => strict.scrubRecord({ summary: JWT })).toThrow(expect.objectContaining({ code: 'AUDIT_REDACTION_REFUSED' }));
    try {
      strict.scrubRecord({ summary: JWT });
    } catch (e) {
      expect(String((e as Error).message)).not.toContain(JWT);
    }
  });
});

describe('argument hashing', () => {
  it('replaces the listed arguments with a keyed HMAC that correlates within an install', () => {
    const key = randomBytes(32);
    const r = new Redactor({ hmacArgs: ['mrn'] }, key);
    const a = r.scrubRecord({ args: { mrn: 'MRN-100001', sql: 'SELECT 1' } }).value.args as Record<string, string>;
    const b = r.scrubRecord({ args: { mrn: 'MRN-100001' } }).value.args as Record<string, string>;
    expect(a.mrn).toMatch(/^hmac-sha256:[0-9a-f]{64}$/);
    expect(a.mrn).toBe(b.mrn);
    expect(a.sql).toBe('SELECT 1');
  });

  it('cannot be reversed by hashing guesses without the install key', () => {
    const r = new Redactor({ hmacArgs: ['mrn'] }, randomBytes(32));
    const other = new Redactor({ hmacArgs: ['mrn'] }, randomBytes(32));
    const h = (r.scrubRecord({ args: { mrn: 'MRN-100001' } }).value.args as Record<string, string>).mrn;
    const plain = createHash('sha256').update('"MRN-100001"').digest('hex');
    expect(h).not.toContain(plain);
    expect((other.scrubRecord({ args: { mrn: 'MRN-100001' } }).value.args as Record<string, string>).mrn).not.toBe(h);
  });

  it('needs the install key when the policy asks for hashing', () => {
    expect(() => new Redactor({ hmacArgs: ['mrn'] })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });
});

describe('the scrubbed copy', () => {
  it('is plain data, keeps a member named __proto__ as a member, and leaves the input untouched', () => {
    const r = new Redactor({}, randomBytes(32));
    const input = JSON.parse('{"args":{"__proto__":{"polluted":true},"password":"pw-123456"}}') as Record<string, unknown>;
    const { value } = r.scrubRecord(input);
    const args = value.args as Record<string, unknown>;
    expect(Object.getPrototypeOf(args)).toBe(Object.prototype);
    expect(Object.keys(args)).toEqual(['__proto__', 'password']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((input.args as Record<string, unknown>).password).toBe('pw-123456');
  });
});
