import { createServer } from 'node:http';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { decodeProtectedHeader, importJWK, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CAEP, COUNTERSIGN_EVENTS, SetForwarder } from '../../../main/core/audit/set-forwarder.ts';
import { AuditStore } from '../../../main/core/audit/store.ts';
import { memorySecretStore, tempDir, toolCall } from './fixtures.ts';

/** An RFC 8935 push receiver that answers with whatever status the test queues next (202 by default). */
class Receiver {
  server!: Server;
  url = '';
  statuses: number[] = [];
  received: { contentType: string | undefined; accept: string | undefined; body: string }[] = [];
  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => (body += c));
      req.on('end', () => {
        this.received.push({ contentType: req.headers['content-type'], accept: req.headers.accept, body });
        const status = this.statuses.shift() ?? 202;
        if (status === 400) res.writeHead(400, { 'content-type': 'application/json' }).end('{"err":"invalid_request","description":"no"}');
        else res.writeHead(status).end();
      });
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/events`;
  }
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

describe('Security Event Token forwarding', () => {
  const dir = tempDir();
  const receiver = new Receiver();
  let store: AuditStore;

  beforeAll(async () => {
    await receiver.start();
    store = await AuditStore.open({ dataDir: dir.path, secrets: memorySecretStore(), redaction: { hmacArgs: ['mrn'] } });
  });
  afterAll(async () => {
    await store.close();
    await receiver.stop();
    dir[Symbol.dispose]();
  });

  function forwarder(extra: Partial<ConstructorParameters<typeof SetForwarder>[0]> = {}): SetForwarder {
    const keys = store.installKeys!;
    return new SetForwarder({
      receiverUrl: receiver.url,
      issuer: `urn:countersign:install:${keys.kid}`,
      audience: 'https://siem.example/receiver',
      subjectIssuer: 'https://idp.example',
      signingKey: { privateKey: keys.privateKey, kid: keys.kid },
      backoffMs: 20,
      ...extra,
    });
  }

  it('pushes a signed secevent+jwt per tool call that verifies with the exported public key and carries no arguments', async () => {
    const f = forwarder();
    const detach = f.attach(store);
    receiver.received.length = 0;
    const rec = await store.append(toolCall(3));
    await f.flush();
    detach();
    expect(receiver.received).toHaveLength(1);
    const [got] = receiver.received;
    expect(got).toMatchObject({ contentType: 'application/secevent+jwt', accept: 'application/json' });
    expect(decodeProtectedHeader(got!.body)).toMatchObject({ typ: 'secevent+jwt', alg: 'EdDSA', kid: store.publicKeyJwk().kid });
    const key = await importJWK(store.publicKeyJwk(), 'EdDSA');
    const { payload } = await jwtVerify(got!.body, key, { audience: 'https://siem.example/receiver', typ: 'secevent+jwt' });
    expect(payload).toMatchObject({
      iss: `urn:countersign:install:${store.publicKeyJwk().kid}`,
      txn: 'jti-3',
      sub_id: { format: 'iss_sub', iss: 'https://idp.example', sub: 'user-3' },
      events: { [COUNTERSIGN_EVENTS.toolCall]: { tool: 'delete_patient', outcome: 'denied', audit_seq: rec.seq, audit_hash: rec.hash } },
    });
    expect(typeof payload.jti).toBe('string');
    const text = JSON.stringify(payload);
    for (const argument of ['appointments WHERE', 'hmac-sha256:', '"args"']) expect(text).not.toContain(argument);
    expect(f.stats()).toEqual({ queued: 0, delivered: 1, dropped: 0, failed: 0 });
    await f.close();
  });

  it('uses the CAEP session-revoked event on sign-out and session-established on sign-in', async () => {
    const f = forwarder();
    receiver.received.length = 0;
    f.enqueue(await store.append({ kind: 'sign_in', outcome: 'success', user: { sub: 'alice' } }));
    f.enqueue(await store.append({ kind: 'sign_out', outcome: 'success', user: { sub: 'alice' } }));
    f.enqueue(await store.append({ kind: 'system', outcome: 'info', user: null, summary: 'not forwarded' }));
    await f.flush();
    const events = receiver.received.map((r) => Object.keys((JSON.parse(Buffer.from(r.body.split('.')[1]!, 'base64url').toString()) as { events: object }).events)[0]);
    expect(events).toEqual([`${CAEP}session-established`, `${CAEP}session-revoked`]);
    await f.close();
  });

  it('retries a receiver answering 503 and delivers once it accepts', async () => {
    const f = forwarder();
    receiver.received.length = 0;
    receiver.statuses.push(503, 503);
    f.enqueue(await store.append(toolCall(1)));
    await f.flush();
    expect(receiver.received).toHaveLength(3);
    expect(f.stats()).toMatchObject({ delivered: 1, failed: 0 });
    await f.close();
  });

  it('does not retry a SET the receiver refuses with 400', async () => {
    const f = forwarder();
    receiver.received.length = 0;
    receiver.statuses.push(400);
    f.enqueue(await store.append(toolCall(1)));
    await f.flush();
    expect(receiver.received).toHaveLength(1);
    expect(f.stats()).toMatchObject({ delivered: 0, failed: 1 });
    await f.close();
  });

  it('keeps a bounded queue while the receiver is down, dropping the oldest, and gives up after its attempts', async () => {
    const f = forwarder({ receiverUrl: 'http://127.0.0.1:9/down', maxQueue: 3, maxAttempts: 2, backoffMs: 5 });
    for (let i = 0; i < 6; i++) f.enqueue(await store.append(toolCall(i)));
    expect(f.stats().queued).toBeLessThanOrEqual(3);
    expect(f.stats().dropped).toBeGreaterThanOrEqual(3);
    await f.flush();
    const s = f.stats();
    expect(s.queued).toBe(0);
    expect(s.delivered).toBe(0);
    expect(s.dropped + s.failed).toBe(6);
    await f.close();
  });
});
