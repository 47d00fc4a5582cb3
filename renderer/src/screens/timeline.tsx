import { useVirtualizer } from '@tanstack/react-virtual';
import { useCallback, useEffect, useMemo, useRef, useState, type KeyboardEvent } from 'react';
import type { AuditRecord } from '../../../common/audit-record.ts';
import { AppError } from '../../../common/errors.ts';
import { OUTCOMES } from '../../../common/audit-record.ts';
import type { AuditFilter, Transport, VerifyResult } from '../../../common/contract.ts';
import { Badge, ErrorNote, OUTCOME_TONE, formatMs, formatTime } from '../components/common.tsx';
import { useAction, useEvent, useTransport } from '../lib/use-app.ts';
import { CallDetail } from './call-detail.tsx';
import type { RendererTransport } from '../transport/web-transport.ts';

const PAGE = 100;
const ROW_HEIGHT = 36;

interface Snapshot {
  /** `before` for every page of this view: records appended later do not shift rows. */
  before: number;
  /** Rows the list has: the count the core gave, grown as the person scrolls past it when it was capped. */
  total: number;
  /** More records match than `total`: the core stopped counting at its cap. */
  capped: boolean;
  pages: Map<number, AuditRecord[]>;
}

/** Rows a capped list grows by when the person reaches its end. */
const GROW = 1_000;

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
 * The last verification per transport, kept across visits to the screen: walking the chain reads every
 * record, so it runs once when the timeline is first shown (after its first page) and again on request.
 */
const verified = new WeakMap<Transport, VerifyResult>();

export function plural(n: number, noun: string): string {
  return `${n.toLocaleString()} ${noun}${n === 1 ? '' : 's'}`;
}

function IntegrityBadge({ ready, head }: { ready: boolean; head: number }) {
  const transport = useTransport();
  const [result, setResult] = useState<VerifyResult | null>(() => verified.get(transport) ?? null);
  const action = useAction();
  const newer = result?.ok && result.head ? Math.max(0, head - result.head.seq) : 0;
  const verify = useCallback(() => {
    void action.run(async () => {
      const r = await transport.call('audit.verify', {});
      verified.set(transport, r);
      setResult(r);
    });
    // `action.run` is stable; the transport is the only input.
  }, [transport]);
  useEffect(() => {
    if (ready && !verified.has(transport)) verify();
  }, [ready, transport, verify]);
  const label = !result
    ? 'Checking the chain…'
    : result.ok
      ? `Chain intact · ${plural(result.checked, 'record')}${result.anchored ? ' · anchored' : ''}`
      : `Chain broken at #${result.firstBad?.seq ?? '?'}: ${result.firstBad?.reason ?? ''}`;
  return (
    <span className="integrity" role="status" aria-live="polite">
      <Badge tone={!result ? 'muted' : result.ok ? 'ok' : 'bad'} label={`Integrity: ${label}`}>
        {result?.ok === false ? '⚠ ' : result ? '✓ ' : ''}
        {label}
      </Badge>{' '}
      {result && (
        <span className="muted small">
          as of {formatTime(result.verifiedAt)}
          {newer > 0 && <> · {plural(newer, 'newer record')} not yet checked</>}
        </span>
      )}
      <button type="button" className="link" onClick={verify} disabled={action.busy}>
        Verify
      </button>
      <ErrorNote error={action.error} />
    </span>
  );
}

function download(filename: string, blob: Blob): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.rel = 'noopener';
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/**
 * The desktop app saves through its native dialog (the core writes the file); the web host streams a
 * download; otherwise the export is taken whole through the contract. Returns what to tell the person.
 */
async function exportAs(transport: RendererTransport, format: 'jsonl' | 'csv', filter: AuditFilter): Promise<string | null> {
  if (transport.saveExport) {
    const saved = await transport.saveExport({ format, filter });
    return saved.saved ? `Exported ${plural(saved.records, 'record')} to ${saved.path}` : null;
  }
  const streamed = await transport.exportFile?.({ format, filter });
  if (streamed) {
    download(streamed.filename, streamed.blob);
    return null;
  }
  const r = await transport.call('audit.export', { format, filter });
  download(r.filename, new Blob([r.content], { type: r.mediaType }));
  return null;
}

type Outcome = (typeof OUTCOMES)[number];
type Tier = 1 | 2 | 3 | 4;
const OUTCOME_CHIPS: ReadonlyArray<{ value: Outcome; label: string }> = OUTCOMES.map((o) => ({ value: o, label: o }));
const TIER_CHIPS: ReadonlyArray<{ value: Tier; label: string }> = [
  { value: 1, label: '1 · read' },
  { value: 2, label: '2 · write' },
  { value: 3, label: '3 · sensitive' },
  { value: 4, label: '4 · blocked' },
];

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
            onClick={() => onChange(on ? selected.filter((v) => v !== o.value) : options.map((x) => x.value).filter((v) => v === o.value || selected.includes(v)))}
          >
            {o.label}
          </button>
        );
      })}
    </fieldset>
  );
}

export function TimelineScreen() {
  const transport = useTransport();
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
  const filterKey = JSON.stringify(filter);

  const [snap, setSnap] = useState<Snapshot | null>(null);
  const [version, setVersion] = useState(0);
  const [fresh, setFresh] = useState(0);
  const [active, setActive] = useState(0);
  const [selected, setSelected] = useState<number | null>(null);
  const [error, setError] = useState<AppError | null>(null);
  const loading = useRef(new Set<number>());
  const atTop = useRef(true);
  const parentRef = useRef<HTMLDivElement>(null);
  const exportAction = useAction();
  const [exported, setExported] = useState<string | null>(null);

  // One reload at a time: appends arriving while one runs coalesce into a single reload after it.
  const inFlight = useRef<Promise<void> | null>(null);
  const again = useRef(false);
  const latestReset = useRef<() => Promise<void>>(() => Promise.resolve());
  const currentFilter = useRef(filterKey);
  currentFilter.current = filterKey;
  const reset = useCallback((): Promise<void> => {
    if (inFlight.current) {
      again.current = true;
      return inFlight.current;
    }
    const run = async (): Promise<void> => {
      try {
        const first = await transport.call('audit.page', { filter: JSON.parse(filterKey) as AuditFilter, offset: 0, limit: PAGE });
        // A page read for a filter the person has since changed is dropped; the reload below reads the new one.
        if (filterKey !== currentFilter.current) return;
        loading.current.clear();
        setSnap({ before: first.head + 1, total: first.total, capped: first.total_capped, pages: new Map([[0, first.records]]) });
        setFresh(0);
        setError(null);
      } catch (err) {
        setError(AppError.from(err));
      } finally {
        inFlight.current = null;
        if (again.current) {
          again.current = false;
          void latestReset.current();
        }
      }
    };
    inFlight.current = run();
    return inFlight.current;
  }, [transport, filterKey]);
  latestReset.current = reset;

  useEffect(() => {
    // A new filter starts a new list: back to its top.
    setActive(0);
    parentRef.current?.scrollTo({ top: 0 });
    atTop.current = true;
    void reset();
  }, [reset]);

  const virtualizer = useVirtualizer({
    count: snap?.total ?? 0,
    getScrollElement: () => parentRef.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 12,
  });
  const items = virtualizer.getVirtualItems();

  const firstIndex = items[0]?.index ?? 0;
  const lastIndex = items.at(-1)?.index ?? 0;
  useEffect(() => {
    if (!snap) return;
    for (let page = Math.floor(firstIndex / PAGE); page <= Math.floor(lastIndex / PAGE); page++) {
      if (snap.pages.has(page) || loading.current.has(page)) continue;
      loading.current.add(page);
      const current = snap;
      transport
        .call('audit.page', { filter: JSON.parse(filterKey) as AuditFilter, before: current.before, offset: page * PAGE, limit: PAGE })
        .then(
          (res) => {
            current.pages.set(page, res.records);
            // A capped count is a floor: reaching its end either finds the real end or grows the list.
            if (current.capped && (page + 1) * PAGE >= current.total) {
              const end = res.records.length < PAGE;
              const total = end ? page * PAGE + res.records.length : current.total + GROW;
              setSnap((s) => (s === current ? { ...current, total, capped: !end } : s));
            }
            setVersion((v) => v + 1);
          },
          (err: unknown) => setError(AppError.from(err)),
        )
        .finally(() => loading.current.delete(page));
    }
  }, [snap, firstIndex, lastIndex, transport, filterKey]);

  useEvent('audit.appended', () => {
    if (atTop.current) void reset();
    else setFresh((n) => n + 1);
  });

  const recordAt = (index: number): AuditRecord | undefined => snap?.pages.get(Math.floor(index / PAGE))?.[index % PAGE];
  void version;

  const onKeyDown = (e: KeyboardEvent<HTMLDivElement>) => {
    const total = snap?.total ?? 0;
    if (!total) return;
    const pageRows = Math.max(1, Math.floor((parentRef.current?.clientHeight ?? 400) / ROW_HEIGHT) - 1);
    let next: number;
    if (e.key === 'ArrowDown') next = Math.min(total - 1, active + 1);
    else if (e.key === 'ArrowUp') next = Math.max(0, active - 1);
    else if (e.key === 'PageDown') next = Math.min(total - 1, active + pageRows);
    else if (e.key === 'PageUp') next = Math.max(0, active - pageRows);
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = total - 1;
    else if (e.key === 'Enter' || e.key === ' ') {
      const r = recordAt(active);
      if (r) setSelected(r.seq);
      e.preventDefault();
      return;
    } else return;
    e.preventDefault();
    setActive(next);
    virtualizer.scrollToIndex(next, { align: 'auto' });
  };

  return (
    <section aria-labelledby="timeline-title" className="screen timeline-screen">
      <header className="row wrap">
        <h1 id="timeline-title">Timeline</h1>
        <IntegrityBadge ready={snap !== null} head={snap ? snap.before - 1 + fresh : 0} />
        <span className="spacer" />
        <button
          type="button"
          disabled={exportAction.busy}
          onClick={() =>
            void exportAction.run(async () => {
              setExported(await exportAs(transport, 'jsonl', filter));
            })
          }
        >
          Export JSON Lines
        </button>
        <button
          type="button"
          disabled={exportAction.busy}
          onClick={() =>
            void exportAction.run(async () => {
              setExported(await exportAs(transport, 'csv', filter));
            })
          }
        >
          Export CSV
        </button>
      </header>
      <ErrorNote error={exportAction.error} />
      {exported && (
        <p className="muted small" role="status">
          {exported}
        </p>
      )}
      <form className="filters" role="search" aria-label="Filter records" onSubmit={(e) => e.preventDefault()}>
        <label>
          Search
          <input aria-label="Search" type="search" value={search} onChange={(e) => setSearch(e.target.value)} placeholder="tool, target, jti, lease…" />
        </label>
        <ChipGroup label="Outcome" options={OUTCOME_CHIPS} selected={outcome} onChange={setOutcome} />
        <ChipGroup label="Tier" options={TIER_CHIPS} selected={tier} onChange={setTier} />
        <label>
          Tool
          <input aria-label="Tool" value={tool} onChange={(e) => setTool(e.target.value)} />
        </label>
        <label>
          User
          <input aria-label="User" value={user} onChange={(e) => setUser(e.target.value)} />
        </label>
        <label>
          From
          <input aria-label="From" type="datetime-local" value={from} onChange={(e) => setFrom(e.target.value)} />
        </label>
        <label>
          To
          <input aria-label="To" type="datetime-local" value={to} onChange={(e) => setTo(e.target.value)} />
        </label>
      </form>
      <ErrorNote error={error} />
      <div className="split">
        <div className="list-pane">
          <div className="row small muted">
            <span aria-live="polite" data-testid="record-count">
              {snap ? (snap.capped ? `${snap.total.toLocaleString()}+ records` : plural(snap.total, 'record')) : 'Loading…'}
            </span>
            {fresh > 0 && (
              <button type="button" className="link" onClick={() => void reset()}>
                {fresh} new — show
              </button>
            )}
          </div>
          <div className="list-head" aria-hidden="true">
            <span>#</span>
            <span>Time</span>
            <span>Tool</span>
            <span>Tier</span>
            <span>User</span>
            <span>Outcome</span>
            <span>Duration</span>
          </div>
          <div
            ref={parentRef}
            className="list"
            role="listbox"
            aria-label="Audit records, newest first"
            aria-activedescendant={snap?.total ? `row-${active}` : undefined}
            tabIndex={0}
            onKeyDown={onKeyDown}
            onScroll={(e) => {
              atTop.current = e.currentTarget.scrollTop < ROW_HEIGHT;
              if (atTop.current && fresh > 0) void reset();
            }}
          >
            <div style={{ height: virtualizer.getTotalSize(), position: 'relative' }}>
              {items.map((item) => {
                const r = recordAt(item.index);
                return (
                  <div
                    key={item.key}
                    id={`row-${item.index}`}
                    role="option"
                    aria-selected={item.index === active}
                    className={`list-row${item.index === active ? ' active' : ''}${r && r.seq === selected ? ' selected' : ''}`}
                    style={{ transform: `translateY(${item.start}px)`, height: ROW_HEIGHT }}
                    onClick={() => {
                      setActive(item.index);
                      if (r) setSelected(r.seq);
                    }}
                  >
                    {r ? (
                      <>
                        <span className="mono muted">{r.seq}</span>
                        <span>{formatTime(r.at)}</span>
                        <span className="mono ellipsis">{r.tool ?? r.kind}</span>
                        <span>{r.tier ?? '—'}</span>
                        <span className="ellipsis">{r.user?.name ?? r.user?.sub ?? '—'}</span>
                        <span>
                          <Badge tone={OUTCOME_TONE[r.outcome] ?? 'muted'}>{r.outcome}</Badge>
                          {r.demo && <span className="lab-tag">lab</span>}
                        </span>
                        <span className="mono">{r.duration_ms !== undefined ? formatMs(r.duration_ms) : ''}</span>
                      </>
                    ) : (
                      <span className="muted">…</span>
                    )}
                  </div>
                );
              })}
            </div>
          </div>
        </div>
        {selected !== null && (
          <CallDetail
            seq={selected}
            onClose={() => {
              setSelected(null);
              parentRef.current?.focus();
            }}
          />
        )}
      </div>
    </section>
  );
}
