/**
 * Time spent waiting on the network (an HTTP request to the IdP or Vault until its answer is in, a
 * PostgreSQL connect, query or close), told to one observer when one is set. The benchmark sets it to
 * tell the waiting apart from Countersign's own work inside a hop (checking the OBO's signature,
 * parsing the statement again, rendering rows). With no observer, `onWire` only calls `run`.
 * Own work that can only be done inside a timed wait (pg computing the SCRAM proof while it connects)
 * is told with `ownInWait`, and the observer takes it back out of the wait.
 */
export type WireKind = 'idp' | 'vault' | 'db';
export type WireObserver = (kind: WireKind, ms: number) => void;

let observer: WireObserver | undefined;

export function observeWire(o: WireObserver | undefined): void {
  observer = o;
}

export function onWire<T>(kind: WireKind, run: () => Promise<T>): Promise<T> {
  const o = observer;
  if (!o) return run();
  const start = performance.now();
  const done = (): void => o(kind, performance.now() - start);
  return run().finally(done);
}

/** Whether an observer is set: the callers that must reach into a library to time own work inside a wait do it only then. */
export function observingWire(): boolean {
  return observer !== undefined;
}

/** Own work of `ms` done inside a wait of `kind` that `onWire` timed: told as a negative wait. */
export function ownInWait(kind: WireKind, ms: number): void {
  observer?.(kind, -ms);
}
