/**
 * Faults on real processes and on the network (process-faults.ts): each part of the lab in its own
 * process behind a fault proxy. Faults share one lab, so they run one after another; the file runs in
 * parallel with the rest of the suite. Last, every log and store of the run is scanned for the secrets
 * it handled.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { artifactBytes, describeHits, scanForSecrets, type Artifact } from '../helpers/secret-scan.ts';
import { faultLedger, reportCounters } from './harness.ts';
import { FAULT_LAB_TTL_S, PROCESS_FAULTS, runFault, startFaultRun, type FaultRun } from './process-faults.ts';

let f: FaultRun;
const ledger = faultLedger();
const extra: Record<string, unknown> = {};

beforeAll(async () => {
  f = await startFaultRun();
  // The first call fetches discovery and the JWKS, so a fault meets a core that has run before.
  expect((await f.call('warm-up')).isError ?? false).toBe(false);
}, 90_000);

afterAll(async () => {
  await reportCounters('process-faults', { faults: ledger.outcomes() }, extra);
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
    const left = await f.leftovers(5_000);
    extra.leftover_roles = left.roles.length;
    extra.leftover_leases = left.leases.length;
    expect(left).toEqual({ roles: [], leases: [] });
  });

  it('leaves no token, OBO, Vault token or password in any log, store or answer of the fault runs', async () => {
    expect(f.planted.size).toBeGreaterThan(10);
    const artifacts: Artifact[] = [
      { kind: 'text', name: 'lab and part logs (IdP, Vault stand-in, PostgreSQL lifecycle)', text: f.logs().join('\n') },
      { kind: 'text', name: 'broker log', text: f.coreLog.join('\n') },
      { kind: 'file', path: f.lab.pg.logFile },
      { kind: 'file', path: f.lab.vaultAuditLogPath },
      { kind: 'dir', path: f.auditDir },
    ];
    const hits = await scanForSecrets(Object.fromEntries(f.planted), artifacts);
    extra.secrets_planted = f.planted.size;
    extra.artifact_bytes_scanned = await artifactBytes(artifacts);
    extra.secret_hits = hits.length;
    expect(hits, describeHits(hits)).toEqual([]);
  });
});
