/**
 * Time spent waiting on the network (an HTTP request to the IdP or Vault until its answer is in, a
 * PostgreSQL connect, query or close), told to one observer when one is set. The benchmark sets it to
 * tell the waiting apart from Countersign's own work inside a hop (checking the OBO's signature,
 * parsing the statement again, rendering rows). With no observer, `onWire` only calls `run`.
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
