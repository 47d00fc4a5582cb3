/**
 * The timeline's query plans (several values merged from per-value index walks, counts from
 * per-combination sums, a search walked newest first and counted within a window) against a plain
 * scan: every record read back oldest first and filtered here, one by one.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { AuditRecord, AuditRecordInput } from '../../../common/audit-record.ts';
import type { AuditFilter } from '../../../common/contract.ts';
import { ftsQuery, searchText } from '../../../main/core/audit/search.ts';
import { AUDIT_COUNT_CAP, AuditStore } from '../../../main/core/audit/store.ts';
import { memorySecretStore, tempDir, toolCall } from './fixtures.ts';

const OUTCOMES = ['success', 'denied', 'error', 'cancelled', 'timeout'] as const;
const TOOLS = ['query', 'update_appointment', 'delete_patient', 'read_chart'] as const;
const WORDS = ['appointments', 'zebra', 'prescriptions', 'notes'] as const;
const T0 = Date.parse('2026-03-01T00:00:00Z');

const recordSpec = fc.record({
  kind: fc.constantFrom('tool_call', 'tool_call', 'tool_call', 'approval'),
  outcome: fc.constantFrom(...OUTCOMES),
  tier: fc.constantFrom(1, 2, 3, 4),
  tool: fc.constantFrom(...TOOLS),
  user: fc.integer({ min: 0, max: 4 }),
  words: fc.subarray([...WORDS]),
});
type Spec = typeof recordSpec extends fc.Arbitrary<infer T> ? T : never;

function input(i: number, s: Spec): AuditRecordInput {
  return toolCall(i, {
    kind: s.kind as AuditRecordInput['kind'],
    outcome: s.outcome,
    tier: s.tier as 1 | 2 | 3 | 4,
    tool: s.tool,
    user: { sub: `user-${s.user}`, name: `User ${s.user}`, email: `user${s.user}@clinic.example` },
    summary: `${s.tool} ${s.words.join(' ')}`,
    args: { note: s.words.join(' ') },
  });
}

/** One to three filter columns at a time (more would match nothing in a store this small). */
const filterArb = (n: number) =>
  fc
    .tuple(
      fc.record({
        outcome: fc.subarray([...OUTCOMES], { minLength: 1 }),
        tier: fc.subarray([1, 2, 3, 4] as const, { minLength: 1 }),
        kind: fc.subarray(['tool_call', 'approval'] as const, { minLength: 1 }),
        tool: fc.constantFrom(...TOOLS),
        user: fc.integer({ min: 0, max: 5 }).chain((u) => fc.constantFrom(`user-${u}`, `User ${u}`, `USER${u}@clinic.example`)),
        search: fc.subarray([...WORDS], { minLength: 1, maxLength: 2 }).map((w) => w.join(' ')),
        from: fc.integer({ min: 0, max: Math.floor(n / 2) }),
        to: fc.integer({ min: Math.floor(n / 2), max: n + 1 }),
      }),
      fc.subarray(['outcome', 'tier', 'kind', 'tool', 'user', 'search', 'from', 'to'] as const, { minLength: 1, maxLength: 3 }),
    )
    .map(([all, keys]) => Object.fromEntries(keys.map((k) => [k, all[k]])) as Partial<typeof all>);

/** The filter as the store takes it: times as ISO strings, record i was written at T0 + (i + 1) s. */
function toFilter(f: { from?: number; to?: number } & Omit<AuditFilter, 'from' | 'to'>): AuditFilter {
  const { from, to, ...rest } = f;
  return {
    ...rest,
    ...(from === undefined ? {} : { from: new Date(T0 + from * 1000).toISOString() }),
    ...(to === undefined ? {} : { to: new Date(T0 + to * 1000).toISOString() }),
  };
}

/** The plain scan: does record r match filter f, decided here from the record alone. */
function matches(r: AuditRecord, f: AuditFilter): boolean {
  if (f.outcome && !f.outcome.includes(r.outcome)) return false;
  if (f.kind && !f.kind.includes(r.kind)) return false;
  if (f.tier && (r.tier === undefined || !f.tier.includes(r.tier))) return false;
  if (f.tool !== undefined && r.tool !== f.tool) return false;
  if (f.user !== undefined) {
    const u = f.user.toLowerCase();
    if (!r.user || !(r.user.sub === f.user || r.user.name?.toLowerCase() === u || r.user.email?.toLowerCase() === u)) return false;
  }
  const at = Date.parse(r.at);
  if (f.from !== undefined && at < Date.parse(f.from)) return false;
  if (f.to !== undefined && at > Date.parse(f.to)) return false;
  if (f.search !== undefined) {
    const terms = new Set(searchText(r).split(' '));
    const wanted = [...(ftsQuery(f.search) ?? '').matchAll(/"([^"]+)"/g)].map((m) => m[1]!);
    if (!wanted.every((t) => terms.has(t))) return false;
  }
  return true;
}

describe('query plans against a plain scan', () => {
  it('return exactly the records, in the order and with the count, that filtering every record gives', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(recordSpec, { minLength: 1, maxLength: 300 }),
        fc.array(fc.tuple(fc.nat(), fc.nat(25), fc.integer({ min: 1, max: 30 })), { minLength: 8, maxLength: 8 }),
        fc.array(filterArb(300), { minLength: 8, maxLength: 8 }),
        async (specs, cursors, filters) => {
          using dir = tempDir();
          let t = T0;
          const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore(), now: () => (t += 1000) });
          try {
            // Half as one batch, the rest one by one: the deferred index rows come in both ways.
            const half = Math.floor(specs.length / 2);
            s.appendMany(specs.slice(0, half).map((sp, i) => input(i, sp)));
            for (let i = half; i < specs.length; i++) await s.append(input(i, specs[i]!));
            const newestFirst = [...s.iterate({})].reverse();
            for (let k = 0; k < filters.length; k++) {
              const filter = toFilter(filters[k]!);
              const [b, offset, limit] = cursors[k]!;
              const before = b % 3 === 0 ? (b % (specs.length + 1)) + 1 : undefined;
              const want = newestFirst.filter((r) => (before === undefined || r.seq < before) && matches(r, filter));
              const page = s.page({ filter, offset, limit, ...(before === undefined ? {} : { before }) });
              expect(page.records.map((r) => r.seq)).toEqual(want.slice(offset, offset + limit).map((r) => r.seq));
              // A store this small is counted exactly by every plan.
              expect({ total: page.total, total_capped: page.total_capped }).toEqual({ total: want.length, total_capped: false });
              expect(s.page({ filter, offset, limit, ...(before === undefined ? {} : { before }) }, { withTotal: false }).records).toEqual(page.records);
              if (before === undefined) expect(s.count(filter)).toBe(want.length);
            }
          } finally {
            await s.close();
          }
        },
      ),
      { numRuns: 25 },
    );
  }, 120_000);
});

describe('the count of a search past its window', () => {
  it('is a floor above the page that reading on through the list confirms, beyond AUDIT_COUNT_CAP records', async () => {
    using dir = tempDir();
    const s = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore() });
    try {
      // "zebra" within errors: every 97th record for the first 3,000, then every 500th.
      const n = AUDIT_COUNT_CAP + 3_000;
      const zebra = (i: number) => (i < 3_000 ? i % 97 === 0 : i % 500 === 0);
      for (let i = 0; i < n; i += 2_000) {
        s.appendMany(
          Array.from({ length: Math.min(2_000, n - i) }, (_, j) => {
            const k = i + j;
            return toolCall(k, { outcome: k % 2 === 0 ? 'error' : 'success', summary: zebra(k) ? 'zebra sighting' : 'routine' });
          }),
        );
      }
      const filter = { search: 'zebra', outcome: ['error' as const] };
      const all = [...s.iterate({})].reverse().filter((r) => matches(r, filter));
      const head = s.head()!.seq;

      // The newest AUDIT_COUNT_CAP records hold some of the matches: a page of 5 and, above it, a floor.
      const inWindow = all.filter((r) => r.seq >= head + 1 - AUDIT_COUNT_CAP).length;
      expect(inWindow).toBeGreaterThan(5);
      expect(inWindow).toBeLessThan(all.length);
      const first = s.page({ filter, limit: 5 });
      expect(first.records.map((r) => r.seq)).toEqual(all.slice(0, 5).map((r) => r.seq));
      expect(first).toMatchObject({ total: inWindow, total_capped: true });

      // A page that ends where the window does: the floor is one more than the page, so a list asks for more.
      const full = s.page({ filter, limit: inWindow });
      expect(full.records.map((r) => r.seq)).toEqual(all.slice(0, inWindow).map((r) => r.seq));
      expect(full).toMatchObject({ total: inWindow + 1, total_capped: true });

      // Reading on as the timeline does (pinned head, growing offset) finds every match exactly once,
      // each floor above what was read so far, and the last page counts exactly.
      const seen: number[] = [];
      for (let offset = 0; offset < all.length; offset += 7) {
        const p = s.page({ filter, before: head + 1, offset, limit: 7 });
        seen.push(...p.records.map((r) => r.seq));
        if (p.total_capped) expect(p.total!).toBeGreaterThan(offset + p.records.length);
        else expect(p.total).toBe(all.length);
      }
      expect(seen).toEqual(all.map((r) => r.seq));
    } finally {
      await s.close();
    }
  }, 120_000);
});
