/**
 * When Claude gets the answer (BrokerOptions.answer): by default once the credential is revoked, shown
 * gone and the call recorded (broker.test.ts reads the record the moment the answer comes); with
 * `on-result`, which the bench measures against it (docs/benchmarks.md, "When to answer"), as soon as
 * the result is in hand, the revocation, its check and the one record following.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call, settled, startBrokerLab, type BrokerLab } from './lab.ts';

let lab: BrokerLab;
beforeAll(async () => {
  lab = await startBrokerLab();
});
afterAll(async () => {
  await lab?.stop();
});

describe('answering on the result', () => {
  it('answers with the rows before the revocation and the record, which still follow: revoked, shown gone, recorded once', async () => {
    const { broker, audit } = lab.broker({ answer: 'on-result' });
    const r = await broker.callTool(call('query', { sql: 'SELECT id FROM patients ORDER BY id LIMIT 3' }));
    expect(r.isError).toBeFalsy();
    expect((r.structuredContent as { rowCount: number }).rowCount).toBe(3);
    expect(audit.records).toHaveLength(0);
    await broker.close();
    expect(audit.records).toHaveLength(1);
    const record = audit.records[0]!;
    expect(record.outcome).toBe('success');
    expect(record.hops!.map((h) => [h.name, h.outcome]).slice(-3)).toEqual([
      ['execute', 'ok'],
      ['revoke', 'ok'],
      ['revoke_check', 'ok'],
    ]);
    expect(await settled(lab)).toEqual({ roles: [], leases: 0 });
  });

  it('answers a refusal only once it is recorded, as before', async () => {
    const { broker, audit } = lab.broker({ answer: 'on-result' });
    const r = await broker.callTool(call('query', { sql: 'DROP TABLE patients' }));
    expect(r.isError).toBe(true);
    expect(audit.records).toHaveLength(1);
    await broker.close();
  });
});
