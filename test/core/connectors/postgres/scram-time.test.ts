/**
 * The SCRAM proof pg computes while it logs in is timed as Countersign's own work, not as a wait on
 * PostgreSQL: the benchmark's own-time figures depend on it. Against the lab's PostgreSQL (SCRAM-SHA-256
 * over TCP), through pg's own handler of the server's challenge, so a pg that stops calling it fails here.
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { timeScramProof } from '../../../../main/core/connectors/postgres/connector.ts';
import { observeWire, type WireKind } from '../../../../main/core/wire-time.ts';
import { call, startBrokerLab, type BrokerLab } from '../../broker/lab.ts';

let lab: BrokerLab;
beforeAll(async () => {
  lab = await startBrokerLab();
});
afterAll(async () => {
  observeWire(undefined);
  await lab?.stop();
});

describe("pg's SCRAM proof", () => {
  it('is timed once per login, inside the connect and shorter than it', async () => {
    const proofs: number[] = [];
    const client = new pg.Client({ connectionString: lab.pg.adminUrl });
    timeScramProof(client, (ms) => proofs.push(ms));
    const started = performance.now();
    await client.connect();
    const connect = performance.now() - started;
    await client.end();
    expect(proofs).toHaveLength(1);
    expect(proofs[0]).toBeGreaterThan(0);
    expect(proofs[0]).toBeLessThan(connect);
  });

  it("is taken out of the database's wait in a broker call, for the statement's login and the revocation check's", async () => {
    const waits: Array<[WireKind, number]> = [];
    const { broker } = lab.broker();
    observeWire((kind, ms) => waits.push([kind, ms]));
    try {
      const r = await broker.callTool(call('query', { sql: 'SELECT id FROM patients ORDER BY id LIMIT 1' }));
      expect(r.isError, JSON.stringify(r.content)).toBeFalsy();
    } finally {
      observeWire(undefined);
    }
    // Two logins, each with its proof: the call's role, and the dropped role PostgreSQL still challenges.
    const own = waits.filter(([kind, ms]) => kind === 'db' && ms < 0);
    expect(own).toHaveLength(2);
    const db = waits.filter(([kind]) => kind === 'db').reduce((a, [, ms]) => a + ms, 0);
    expect(db).toBeGreaterThan(0);
  });
});
