/**
 * The timeline: every audit record, newest first, in a virtual list read a page at a time
 * (timeline-pages.ts), under the filters of timeline-filters.tsx, with the chain's integrity and the
 * export beside them; selecting a row opens its call detail.
 */
import { useVirtualizer } from '@tanstack/react-virtual';
import { useEffect, useRef, useState, type KeyboardEvent } from 'react';
import { ErrorNote, plural } from '../components/common.tsx';
import { useAction, useEvent, useTransport } from '../lib/use-app.ts';
import { CallDetail } from './call-detail.tsx';
import { exportAs } from './timeline-export.ts';
import { FilterForm, useTimelineFilters } from './timeline-filters.tsx';
import { IntegrityBadge } from './timeline-integrity.tsx';
import { useAuditPages, useVisiblePages } from './timeline-pages.ts';
import { TimelineRow } from './timeline-row.tsx';

const ROW_HEIGHT = 36;

export function TimelineScreen() {
  const transport = useTransport();
  const { filter, fields } = useTimelineFilters();
  const filterKey = JSON.stringify(filter);

  const [active, setActive] = useState(0);
  const [selected, setSelected] = useState<number | null>(null);
  const atTop = useRef(true);
  const parentRef = useRef<HTMLDivElement>(null);
  const exportAction = useAction();
  const [exported, setExported] = useState<string | null>(null);

  const pages = useAuditPages(transport, filterKey);
  const { snap, fresh, setFresh, error, reset, recordAt } = pages;

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
  useVisiblePages(pages, firstIndex, lastIndex);

  useEvent('audit.appended', () => {
    if (atTop.current) void reset();
    else setFresh((n) => n + 1);
  });

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
      <FilterForm fields={fields} />
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
                    <TimelineRow record={r} />
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
