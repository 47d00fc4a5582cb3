/**
 * The timeline's filters: their state, the filter the core is asked for (debounced as the person
 * types), and the form that sets them, with chip groups for the filters that take several values.
 */
import { useEffect, useMemo, useState } from 'react';
import { OUTCOMES } from '../../../common/audit-record.ts';
import type { AuditFilter } from '../../../common/contract.ts';

type Outcome = (typeof OUTCOMES)[number];
type Tier = 1 | 2 | 3 | 4;
const OUTCOME_CHIPS: ReadonlyArray<{ value: Outcome; label: string }> = OUTCOMES.map((o) => ({
  value: o,
  label: o,
}));
const TIER_CHIPS: ReadonlyArray<{ value: Tier; label: string }> = [
  { value: 1, label: '1 · read' },
  { value: 2, label: '2 · write' },
  { value: 3, label: '3 · sensitive' },
  { value: 4, label: '4 · blocked' },
];

function toIso(local: string): string | undefined {
  if (!local) return undefined;
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? undefined : d.toISOString();
}

function useDebounced<T>(value: T, ms: number): T {
  const [v, setV] = useState(value);
  useEffect(() => {
    const t = setTimeout(() => setV(value), ms);
    return () => clearTimeout(t);
  }, [value, ms]);
  return v;
}

/**
 * A filter that takes several values at once ("denied or error"): one toggle button per value, none
 * pressed meaning any. Buttons with aria-pressed, grouped under the filter's name.
 */
function ChipGroup<T extends string | number>(props: {
  label: string;
  options: ReadonlyArray<{ value: T; label: string }>;
  selected: readonly T[];
  onChange: (next: readonly T[]) => void;
}) {
  const { label, options, selected, onChange } = props;
  return (
    <fieldset className="chips">
      <legend>
        {label}
        {selected.length === 0 ? ': any' : ''}
      </legend>
      {options.map((o) => {
        const on = selected.includes(o.value);
        return (
          <button
            key={String(o.value)}
            type="button"
            aria-pressed={on}
            aria-label={`${label} ${o.label}`}
            onClick={() =>
              onChange(
                on
                  ? selected.filter((v) => v !== o.value)
                  : options.map((x) => x.value).filter((v) => v === o.value || selected.includes(v)),
              )
            }
          >
            {o.label}
          </button>
        );
      })}
    </fieldset>
  );
}

/** The filters' state and the filter they make, debounced by 200 ms. */
export function useTimelineFilters() {
  const [outcome, setOutcome] = useState<readonly Outcome[]>([]);
  const [tier, setTier] = useState<readonly Tier[]>([]);
  const [tool, setTool] = useState('');
  const [user, setUser] = useState('');
  const [from, setFrom] = useState('');
  const [to, setTo] = useState('');
  const [search, setSearch] = useState('');
  const filterNow = useMemo<AuditFilter>(() => {
    const f: AuditFilter = {};
    if (outcome.length > 0) f.outcome = [...outcome];
    if (tier.length > 0) f.tier = [...tier];
    if (tool.trim()) f.tool = tool.trim();
    if (user.trim()) f.user = user.trim();
    const fromIso = toIso(from);
    const toIsoV = toIso(to);
    if (fromIso) f.from = fromIso;
    if (toIsoV) f.to = toIsoV;
    if (search.trim()) f.search = search.trim();
    return f;
  }, [outcome, tier, tool, user, from, to, search]);
  const filter = useDebounced(filterNow, 200);
  const fields = {
    outcome,
    setOutcome,
    tier,
    setTier,
    tool,
    setTool,
    user,
    setUser,
    from,
    setFrom,
    to,
    setTo,
    search,
    setSearch,
  };
  return { filter, fields };
}

export type FilterFields = ReturnType<typeof useTimelineFilters>['fields'];

/** The filter form; its fields are the state useTimelineFilters holds. */
export function FilterForm({ fields: f }: { fields: FilterFields }) {
  return (
    <form className="filters" role="search" aria-label="Filter records" onSubmit={(e) => e.preventDefault()}>
      <label>
        Search
        <input
          aria-label="Search"
          type="search"
          value={f.search}
          onChange={(e) => f.setSearch(e.target.value)}
          placeholder="tool, target, jti, lease…"
        />
      </label>
      <ChipGroup label="Outcome" options={OUTCOME_CHIPS} selected={f.outcome} onChange={f.setOutcome} />
      <ChipGroup label="Tier" options={TIER_CHIPS} selected={f.tier} onChange={f.setTier} />
      <LabeledInput label="Tool" value={f.tool} onChange={f.setTool} />
      <LabeledInput label="User" value={f.user} onChange={f.setUser} />
      <LabeledInput label="From" type="datetime-local" value={f.from} onChange={f.setFrom} />
      <LabeledInput label="To" type="datetime-local" value={f.to} onChange={f.setTo} />
    </form>
  );
}

/** One text or date field of the form, named by its label. */
function LabeledInput({ label, value, onChange, type }: { label: string; value: string; onChange: (value: string) => void; type?: 'datetime-local' }) {
  return (
    <label>
      {label}
      <input aria-label={label} {...(type ? { type } : {})} value={value} onChange={(e) => onChange(e.target.value)} />
    </label>
  );
}
