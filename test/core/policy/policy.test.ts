import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { defaultTierForStatement, effectiveLimits, parsePolicy } from '../../../main/core/policy/policy.ts';
import { AppError } from '../../../common/errors.ts';

const demoPath = new URL('../../../main/core/policy/demo-clinic.policy.jsonc', import.meta.url);

function policyError(text: string): AppError {
  try {
    parsePolicy(text, 'p.jsonc');
  } catch (error) {
    if (AppError.is(error, 'POLICY_INVALID')) return error;
    throw error;
  }
  throw new Error('expected POLICY_INVALID');
}

describe('policy file', () => {
  it('parses the demo clinic policy with its comments', () => {
    const policy = parsePolicy(readFileSync(demoPath, 'utf8'));
    expect(policy.postgres?.tables.patients?.sensitiveRows).toBe(true);
    expect(policy.postgres?.roles.read).toBe('clinic-read');
  });

  it('names the line, column and field of a wrong value', () => {
    const err = policyError('{\n  "version": 1,\n  "postgres": {\n    "location": "x", "audience": "a",\n    "vault": {"authMount": "jwt", "dbMount": "database"},\n    "roles": {"read": "r", "write": "w", "sensitive": "s"},\n    "tables": { "notes": { "tier": 7 } }\n  }\n}');
    expect(err.message).toContain('p.jsonc:7:');
    expect(err.message).toContain('postgres.tables.notes.tier');
  });

  it('reports a missing field at its parent object', () => {
    const err = policyError('{\n  "version": 1,\n  "postgres": {\n    "location": "x"\n  }\n}');
    expect(err.message).toMatch(/p\.jsonc:3:\d+: postgres\.audience/);
  });

  it('refuses unknown fields instead of ignoring them', () => {
    expect(policyError('{ "version": 1, "allow_everything": true }').message).toContain('p.jsonc:1:');
  });

  it('reports a syntax error with its line', () => {
    expect(policyError('{\n  "version": 1\n  "postgres": {}\n}').message).toMatch(/^p\.jsonc:3:\d+: /);
  });
});

describe('tiers and limits', () => {
  it('gives reads 1, bounded writes 2, unbounded writes and DDL 3, DROP/TRUNCATE/GRANT/other 4', () => {
    expect(defaultTierForStatement('SELECT', true)).toBe(1);
    expect(defaultTierForStatement('UPDATE', true)).toBe(2);
    expect(defaultTierForStatement('DELETE', false)).toBe(3);
    expect(defaultTierForStatement('DDL', true)).toBe(3);
    for (const kind of ['DROP', 'TRUNCATE', 'GRANT', 'other']) expect(defaultTierForStatement(kind, true)).toBe(4);
  });

  it('lets tool and table limits only tighten the connector limits', () => {
    expect(effectiveLimits({ rowCap: 100 }, { rowCap: 500 }, { rowCap: 20 }).rowCap).toBe(20);
    expect(effectiveLimits({ rowCap: 100 }, { rowCap: 500 }).rowCap).toBe(100);
  });
});
