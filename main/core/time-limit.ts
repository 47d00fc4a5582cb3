/**
 * A time limit that ends with the work it bounds. `AbortSignal.timeout` cannot be cleared: its timer
 * fires at its time whether its request finished long ago or not, and then builds a TimeoutError (with
 * a stack) and runs every abort listener still attached to the signal (undici leaves its own on each
 * request's), in the middle of whichever call is running by then. A call makes several requests, each
 * with a limit of seconds, so every call paid for the limits of the calls before it. Each request on a
 * call's path takes one of these instead and clears it once its answer is read (docs/benchmarks.md,
 * "Limits that outlive their request").
 */
export class TimeLimit implements Disposable {
  readonly #controller = new AbortController();
  readonly #timer: NodeJS.Timeout;

  /** `reason`: what the signal aborts with; by default what AbortSignal.timeout gives (a DOMException named TimeoutError). */
  constructor(ms: number, reason: () => unknown = () => new DOMException('The operation was aborted due to timeout', 'TimeoutError')) {
    this.#timer = setTimeout(() => this.#controller.abort(reason()), ms);
    // Like AbortSignal.timeout's: a limit does not keep the process alive.
    this.#timer.unref();
  }

  /** Aborted when the limit is reached, never once cleared. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** Ends the limit: its timer will not fire. */
  clear(): void {
    clearTimeout(this.#timer);
  }

  [Symbol.dispose](): void {
    this.clear();
  }
}
