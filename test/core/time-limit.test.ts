import { describe, expect, it } from 'vitest';
import { TimeLimit } from '../../main/core/time-limit.ts';

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('TimeLimit', () => {
  it('aborts at its time with the reason AbortSignal.timeout gives (a TimeoutError)', async () => {
    const limit = new TimeLimit(30);
    expect(limit.signal.aborted).toBe(false);
    await wait(120);
    expect(limit.signal.aborted).toBe(true);
    expect(limit.signal.reason).toBeInstanceOf(DOMException);
    expect((limit.signal.reason as DOMException).name).toBe('TimeoutError');
  });

  it('never fires once cleared, or once the scope that holds it with `using` is left', async () => {
    const cleared = new TimeLimit(30);
    cleared.clear();
    let held: AbortSignal;
    {
      using limit = new TimeLimit(30);
      held = limit.signal;
    }
    await wait(120);
    expect(cleared.signal.aborted).toBe(false);
    expect(held.aborted).toBe(false);
  });
});
