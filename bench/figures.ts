/**
 * What a benchmark part returns: named figures, each with the goal it is held to (or null, with what
 * it is instead: a baseline, a floor, a detail) and whether this run met it. bench/run.ts merges the
 * parts' figures into bench/results/latest.json; nothing there comes from anywhere but this run.
 *
 * A part is a module in bench/ that exports `bench(ctx: BenchContext): Promise<Figures>` and is named
 * on one line of PARTS in bench/run.ts.
 */
import type { Lab } from '../lab/index.ts';

export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
}

export type FigureValue = number | Percentiles | Record<string, number>;

export interface Goal {
  op: '<=' | '>=';
  value: number;
}

export interface Figure {
  value: FigureValue | null;
  unit: 'ms' | 'MB' | 'ratio' | 'share' | 'per_s' | 'count' | 's' | 'bytes';
  /** The goal this figure is held to; null for a figure that is a baseline, a floor or a detail. */
  goal: Goal | null;
  /** Whether the value meets the goal; null when there is no goal or no value. */
  met: boolean | null;
  /** What was measured, in words (and, for a ratio, what it divides). */
  of: string;
  /** Why the value is null (the part failed, a tool is absent). */
  missing?: string;
}

export type Figures = Record<string, Figure>;

export interface BenchContext {
  /** The lab (IdP, Vault stand-in, PostgreSQL, upstreams), started once for every part that asks. */
  lab(): Promise<Lab>;
  log(line: string): void;
  /** How many calls the core serves before its memory is read (BENCH_CORE_CALLS, default 10,000). */
  coreCalls: number;
}

/** The shape every part module has. */
export type BenchPart = (ctx: BenchContext) => Promise<Figures>;

export function percentiles(samples: readonly number[]): Percentiles {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number): number => round(s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? NaN);
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99) };
}

/**
 * The median of `values` and a distribution-free 95% confidence interval for it: the order statistics
 * k and n−k+1 with k from the binomial(n, ½) tail (normal approximation, fine for n ≥ 30).
 */
export function medianWithCi(values: readonly number[]): { median: number; ci95_low: number; ci95_high: number } {
  const s = [...values].sort((a, b) => a - b);
  const n = s.length;
  const k = Math.max(1, Math.floor(n / 2 - (1.96 * Math.sqrt(n)) / 2));
  const median = n % 2 === 1 ? s[(n - 1) / 2]! : (s[n / 2 - 1]! + s[n / 2]!) / 2;
  return { median: round(median), ci95_low: round(s[k - 1] ?? NaN), ci95_high: round(s[n - k] ?? NaN) };
}

export const round = (n: number, digits = 3): number => {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
};

const headline = (v: FigureValue): number | undefined => (typeof v === 'number' ? v : 'p50' in v ? (v as Percentiles).p50 : undefined);

/** A figure held to a goal; a percentile figure is judged on its p50 unless `at` says otherwise. */
export function goal(value: FigureValue | null | undefined, unit: Figure['unit'], op: Goal['op'], target: number, of: string, at?: 'p50' | 'p99'): Figure {
  const v = value ?? null;
  let x: number | undefined;
  if (v !== null) x = at && typeof v === 'object' ? (v as Percentiles)[at] : headline(v);
  const met = x === undefined || !Number.isFinite(x) ? null : op === '<=' ? x <= target : x >= target;
  return { value: v, unit, goal: { op, value: target }, met, of };
}

/** A figure that is not a goal of its own: a baseline, a floor, a detail. `of` says which. */
export function plain(value: FigureValue | null | undefined, unit: Figure['unit'], of: string): Figure {
  return { value: value ?? null, unit, goal: null, met: null, of };
}

/** `num / den` rounded, or null when either is absent or den is 0. */
export function ratioOf(num: number | undefined | null, den: number | undefined | null): number | null {
  if (num == null || den == null || !Number.isFinite(num) || !Number.isFinite(den) || den === 0) return null;
  return round(num / den);
}

/** A deterministic generator (mulberry32), so every run fills the same store. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
