/**
 * The timeline's query state: the records of one filter, read a page at a time as the person scrolls,
 * all against one snapshot (`before`) so that records appended later do not shift the rows; and the
 * reload, one at a time, that a new filter or new records start.
 */
import { useCallback, useRef, useState, useEffect } from 'react';
import type { AuditRecord } from '../../../common/audit-record.ts';
import type { AuditFilter } from '../../../common/contract.ts';
import { AppError } from '../../../common/errors.ts';
import type { RendererTransport } from '../transport/web-transport.ts';

const PAGE = 100;

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

/** The records of the filter `filterKey` (its JSON), the reload, and what the list shows around them. */
export function useAuditPages(transport: RendererTransport, filterKey: string) {
  const [snap, setSnap] = useState<Snapshot | null>(null);
  const [, setVersion] = useState(0);
  const [fresh, setFresh] = useState(0);
  const [error, setError] = useState<AppError | null>(null);
  const loading = useRef(new Set<number>());

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
        const first = await transport.call('audit.page', {
          filter: JSON.parse(filterKey) as AuditFilter,
          offset: 0,
          limit: PAGE,
          fields: 'row',
        });
        // A page read for a filter the person has since changed is dropped; the reload below reads the new one.
        if (filterKey !== currentFilter.current) return;
        loading.current.clear();
        setSnap({
          before: first.head + 1,
          total: first.total,
          capped: first.total_capped,
          pages: new Map([[0, first.records]]),
        });
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

  const recordAt = (index: number): AuditRecord | undefined =>
    snap?.pages.get(Math.floor(index / PAGE))?.[index % PAGE];

  const loader = { snap, setSnap, setVersion, setError, loading, transport, filterKey };
  return { snap, fresh, setFresh, error, reset, recordAt, loader };
}

/** Reads the pages of the rows from `firstIndex` to `lastIndex` (the virtual list's) not yet read or being read. */
export function useVisiblePages(
  pages: ReturnType<typeof useAuditPages>,
  firstIndex: number,
  lastIndex: number,
): void {
  const { snap, setSnap, setVersion, setError, loading, transport, filterKey } = pages.loader;
  useEffect(() => {
    if (!snap) return;
    for (let page = Math.floor(firstIndex / PAGE); page <= Math.floor(lastIndex / PAGE); page++) {
      if (snap.pages.has(page) || loading.current.has(page)) continue;
      loading.current.add(page);
      const current = snap;
      transport
        .call('audit.page', {
          filter: JSON.parse(filterKey) as AuditFilter,
          before: current.before,
          offset: page * PAGE,
          limit: PAGE,
          fields: 'row',
        })
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
}
