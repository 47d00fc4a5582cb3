import { describe, expect, it } from 'vitest';
import { normaliseTableKey, qualifiedName, splitQualified } from '../../../../main/core/connectors/postgres/sql-names.ts';

describe('table and function names as the RAR writes them', () => {
  it('qualifies a policy key written without a schema and reads quoted parts as written', () => {
    expect(normaliseTableKey('patients')).toBe('public.patients');
    expect(normaliseTableKey('Patients')).toBe('public.patients');
    expect(normaliseTableKey('public.patients')).toBe('public.patients');
    expect(normaliseTableKey('"Mixed Case"')).toBe('public."Mixed Case"');
    expect(normaliseTableKey('other."a.b"')).toBe('other."a.b"');
    expect(normaliseTableKey('lower', 'pg_catalog')).toBe('pg_catalog.lower');
  });

  it('quotes a part only when PostgreSQL would not read it back unchanged', () => {
    expect(qualifiedName('public', 'notes')).toBe('public.notes');
    expect(qualifiedName('public', 'Notes')).toBe('public."Notes"');
    expect(qualifiedName('public', 'two words')).toBe('public."two words"');
    expect(splitQualified('"a""b".c')).toEqual(['a"b', 'c']);
    expect(normaliseTableKey('"a""b".c')).toBe('"a""b".c');
  });
});
