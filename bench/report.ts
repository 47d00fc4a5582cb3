/**
 * The one benchmark report: the figures every part produced in this run, each with its goal and
 * whether it was met, the parts that did not run and why, and a table for the terminal. Nothing is
 * filled in or carried over from another run: a part that is missing or failed leaves no figures, and
 * the report says so (`complete: false`).
 */
import type { Figure, Figures, Percentiles } from './figures.ts';

export interface PartOutcome {
  ok: boolean;
  seconds?: number;
  /** Why the part produced no figures (its module is missing, it threw, it was left out). */
  reason?: string;
}

export interface Report {
  /** Every part ran and every figure with a goal has a value. */
  complete: boolean;
  parts: Record<string, PartOutcome>;
  goals: { met: number; not_met: number; unmeasured: number; not_met_keys: string[] };
  figures: Figures;
  meta: Record<string, unknown>;
}

export function buildReport(parts: Record<string, PartOutcome>, figures: Figures, meta: Record<string, unknown>): Report {
  const withGoal = Object.entries(figures).filter(([, f]) => f.goal !== null);
  const notMet = withGoal.filter(([, f]) => f.met === false).map(([k]) => k);
  const unmeasured = withGoal.filter(([, f]) => f.met === null).length;
  return {
    complete: Object.values(parts).every((p) => p.ok) && unmeasured === 0,
    parts,
    goals: { met: withGoal.filter(([, f]) => f.met === true).length, not_met: notMet.length, unmeasured, not_met_keys: notMet },
    figures,
    meta,
  };
}

const fmt = (n: number): string => (Number.isInteger(n) ? String(n) : n.toFixed(Math.abs(n) < 10 ? 3 : 1));

function value(f: Figure): string {
  const v = f.value;
  if (v === null) return `null (${f.missing ?? 'not measured'})`;
  if (typeof v === 'number') return `${fmt(v)} ${f.unit}`;
  if ('p50' in v && 'p99' in v) {
    const p = v as Percentiles;
    return `p50 ${fmt(p.p50)}  p95 ${fmt(p.p95)}  p99 ${fmt(p.p99)} ${f.unit}`;
  }
  return `${Object.entries(v)
    .map(([k, x]) => `${k} ${fmt(x)}`)
    .join('  ')} ${f.unit}`;
}

/** A plain-text table of every figure, its goal and whether it was met, then the parts that did not run. */
export function formatTable(report: Report): string {
  const rows: Array<[string, string, string]> = [];
  for (const [k, f] of Object.entries(report.figures)) {
    const judged = f.goal === null ? '' : `goal ${f.goal.op} ${f.goal.value}: ${f.met === null ? 'not measured' : f.met ? 'met' : 'NOT met'}`;
    rows.push([k, value(f), judged]);
  }
  for (const [name, p] of Object.entries(report.parts)) if (!p.ok) rows.push([`part ${name}`, 'did not run', p.reason ?? '']);
  const w0 = Math.max(...rows.map((r) => r[0].length));
  const w1 = Math.max(...rows.map((r) => r[1].length));
  const lines = rows.map(([a, b, c]) => `${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`.trimEnd());
  lines.push('', `goals met ${report.goals.met}, not met ${report.goals.not_met}, not measured ${report.goals.unmeasured}; complete: ${report.complete}`);
  return lines.join('\n');
}
