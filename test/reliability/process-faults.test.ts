/**
 * Faults on real processes and on the network (process-faults.ts): each part of the lab in its own
 * process behind a fault proxy. Faults share one lab, so they run one after another; the file runs in
 * parallel with the rest of the suite.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { faultLedger, reportCounters } from './harness.ts';
import { FAULT_LAB_TTL_S, PROCESS_FAULTS, runFault, startFaultRun, type FaultRun } from './process-faults.ts';

let f: FaultRun;
const ledger = faultLedger();

beforeAll(async () => {
  f = await startFaultRun();
  // The first call fetches discovery and the JWKS, so a fault meets a core that has run before.
  expect((await f.call('warm-up')).isError ?? false).toBe(false);
}, 90_000);

afterAll(async () => {
  await reportCounters('process-faults', { faults: ledger.outcomes() });
  await f?.stop();
}, 60_000);

describe('faults on real processes and the network', () => {
  for (const fault of PROCESS_FAULTS) {
    it(`${fault.name}: answers [${fault.code}] in time, one record, nothing left, and the next call succeeds`, { timeout: 60_000 }, async () => {
      await ledger.run(fault.name, fault.layer, () => runFault(f, fault).then(() => {}));
    });
  }

  it(`leaves no role or lease once the per-call TTL (${FAULT_LAB_TTL_S} s) has passed`, { timeout: (FAULT_LAB_TTL_S + 30) * 1000 }, async () => {
    await new Promise((r) => setTimeout(r, (FAULT_LAB_TTL_S + 2) * 1000));
    expect(await f.leftovers(5_000)).toEqual({ roles: [], leases: [] });
  });
});
