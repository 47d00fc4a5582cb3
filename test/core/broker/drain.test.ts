import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, startBrokerLab, type BrokerLab } from './lab.ts';

let lab: BrokerLab;
beforeAll(async () => {
  lab = await startBrokerLab();
});
afterAll(async () => {
  await lab?.stop();
});

describe('quitting with calls in flight', () => {
  it('waits for each call to revoke its credential and write its record before closing', async () => {
    const { broker, audit } = lab.broker();
    const controller = new AbortController();
    const pending = broker.callTool(call('query', { sql: 'SELECT pg_sleep(3)' }, { signal: controller.signal }));
    // Let the call reach the database with its per-call role.
    for (let i = 0; i < 100 && (await lab.leftoverRoles()).length === 0; i++) await new Promise((r) => setTimeout(r, 30));
    expect((await lab.leftoverRoles()).length).toBe(1);
    // Quit: the session's signal fires, then close() drains.
    controller.abort();
    await broker.close();
    // Nothing is left the moment close() resolves: no waiting on Vault's TTL.
    expect(await lab.leftoverRoles()).toEqual([]);
    expect(lab.vault.leases()).toBe(0);
    expect(audit.records).toHaveLength(1);
    expect(audit.records[0]).toMatchObject({ kind: 'tool_call', outcome: 'cancelled' });
    expect((await pending).isError).toBe(true);
  });
});
