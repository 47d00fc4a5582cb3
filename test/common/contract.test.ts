import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { CHANNELS, EVENTS, channelsFor, isChannel } from '../../common/contract.ts';

/** Every property name reachable from a schema, however deeply nested. */
function fieldNames(schema: z.ZodType, into = new Set<string>(), seen = new Set<z.ZodType>()): Set<string> {
  if (seen.has(schema)) return into;
  seen.add(schema);
  if (schema instanceof z.ZodObject) {
    for (const [key, value] of Object.entries(schema.shape as Record<string, z.ZodType>)) {
      into.add(key);
      fieldNames(value, into, seen);
    }
  } else if (schema instanceof z.ZodArray) fieldNames(schema.element as z.ZodType, into, seen);
  else if (schema instanceof z.ZodOptional || schema instanceof z.ZodNullable) fieldNames(schema.unwrap() as z.ZodType, into, seen);
  else if (schema instanceof z.ZodDefault) fieldNames(schema.unwrap() as z.ZodType, into, seen);
  else if (schema instanceof z.ZodUnion) for (const o of schema.options as z.ZodType[]) fieldNames(o, into, seen);
  else if (schema instanceof z.ZodRecord) fieldNames(schema.valueType as z.ZodType, into, seen);
  return into;
}

describe('the UI contract', () => {
  it('has no field that could carry a token, secret, verifier or password', () => {
    const names = new Set<string>();
    for (const spec of Object.values(CHANNELS)) {
      fieldNames(spec.request, names);
      fieldNames(spec.response, names);
    }
    for (const schema of Object.values(EVENTS)) fieldNames(schema, names);
    expect(names.size).toBeGreaterThan(40);
    expect([...names].filter((n) => /token|secret|verifier|password|bearer|credential/i.test(n))).toEqual([]);
  });

  it('strips a field a handler returns that the contract does not name', () => {
    const parsed = CHANNELS['session.signIn'].response.parse({ user: { sub: 'u1', access_token: 'leak' } });
    expect(parsed).toEqual({ user: { sub: 'u1' } });
  });

  it('rejects a request with a field the contract does not name', () => {
    expect(CHANNELS['audit.get'].request.safeParse({ seq: 1, sql: 'drop' }).success).toBe(false);
    expect(CHANNELS['status.get'].request.safeParse({ x: 1 }).success).toBe(false);
  });

  it('keeps approving a call out of the desktop host, where a native dialog asks instead', () => {
    expect(channelsFor('headless')).toContain('approvals.decide');
    expect(channelsFor('electron')).not.toContain('approvals.decide');
    expect(channelsFor('electron')).toContain('approvals.deny');
  });

  it('does not treat inherited object keys as channels', () => {
    expect(isChannel('toString')).toBe(false);
    expect(isChannel('__proto__')).toBe(false);
    expect(isChannel('audit.page')).toBe(true);
  });
});
