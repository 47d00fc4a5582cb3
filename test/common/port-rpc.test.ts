import { describe, expect, it } from 'vitest';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { PortRpc, type PortLike } from '../../common/port-rpc.ts';
import { AppError } from '../../common/errors.ts';

function wrap(port: MessagePort): PortLike {
  return {
    postMessage: (m) => port.postMessage(m),
    onMessage: (l) => {
      port.on('message', l);
      return () => port.off('message', l);
    },
  };
}

function pair(handlers: ConstructorParameters<typeof PortRpc>[1]) {
  const { port1, port2 } = new MessageChannel();
  const server = new PortRpc(wrap(port1), handlers);
  const client = new PortRpc(wrap(port2));
  return { server, client, close: () => (server.close(), client.close(), port1.close(), port2.close()) };
}

describe('PortRpc', () => {
  it('answers a request over a real message channel', async () => {
    const { client, close } = pair({ 'status.get': async () => ({ signedIn: true }) });
    await expect(client.call('status.get', {})).resolves.toEqual({ signedIn: true });
    close();
  });

  it('carries only code and message of an error', async () => {
    const { client, close } = pair({
      fail: async () => {
        throw new AppError('VAULT_SEALED', 'Vault is sealed.', { cause: new Error('secret-ish detail') });
      },
      boom: async () => {
        throw new Error('token=abc.def.ghi');
      },
    });
    await expect(client.call('fail', {})).rejects.toMatchObject({ code: 'VAULT_SEALED', message: 'Vault is sealed.' });
    const e = await client.call('boom', {}).catch((x: AppError) => x);
    expect(e).toMatchObject({ code: 'INTERNAL' });
    expect((e as AppError).message).not.toContain('abc.def.ghi');
    close();
  });

  it('refuses a channel it does not serve, including inherited names', async () => {
    const { client, close } = pair({});
    await expect(client.call('toString', {})).rejects.toMatchObject({ code: 'INPUT_INVALID' });
    close();
  });

  it('cancels the handler when the caller aborts', async () => {
    let aborted = false;
    const { client, close } = pair({
      wait: (_p, signal) =>
        new Promise((_, reject) => signal.addEventListener('abort', () => ((aborted = true), reject(new Error('x'))))),
    });
    const c = new AbortController();
    const pending = client.call('wait', {}, c.signal);
    setTimeout(() => c.abort(), 20);
    await expect(pending).rejects.toMatchObject({ code: 'CANCELLED' });
    await new Promise((r) => setTimeout(r, 50));
    expect(aborted).toBe(true);
    close();
  });

  it('delivers events', async () => {
    const { server, client, close } = pair({});
    const got = new Promise((resolve) => client.onEvent((name, payload) => resolve([name, payload])));
    server.emit('audit.appended', { seq: 1 });
    await expect(got).resolves.toEqual(['audit.appended', { seq: 1 }]);
    close();
  });
});
