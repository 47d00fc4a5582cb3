/**
 * The preload against an Electron test double (the Electron binary cannot exist here): the double's
 * `contextBridge` records what is exposed, its `ipcRenderer.invoke` reaches the real IPC handlers of
 * main/electron/ipc.ts, which call the in-memory fixture app. What this proves is the preload's
 * surface and its wiring to the handlers, not Electron's isolation itself.
 */
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { PRELOAD_GLOBAL, channelsFor, type Channel } from '../../common/contract.ts';
import { exposedInMainWorld, ipcMain, ipcMainHandlers, renderer } from '../helpers/preload-double.ts';
import { createFixtureApp, sampleToolCall } from '../helpers/ui.ts';

vi.mock('electron', () => import('../helpers/preload-double.ts'));

interface Exposed {
  call(channel: string, request: unknown): Promise<unknown>;
  on(event: string, listener: (payload: unknown) => void): () => void;
}

const app = createFixtureApp();
let exposed: Exposed;
let EVENT_CHANNEL: string;

beforeAll(async () => {
  const ipc = await import('../../main/electron/ipc.ts');
  EVENT_CHANNEL = ipc.EVENT_CHANNEL;
  ipc.registerIpcHandlers(
    ipcMain as never,
    { call: (method, params) => (app.handlers[method as Channel] as (p: unknown) => Promise<unknown>)(params) },
  );
  await import('../../main/electron/preload.ts');
  exposed = exposedInMainWorld.get(PRELOAD_GLOBAL) as Exposed;
});

describe('the preload', () => {
  it('exposes one object with only call and on, under the contract’s name', () => {
    expect([...exposedInMainWorld.keys()]).toEqual([PRELOAD_GLOBAL]);
    expect(Object.keys(exposed).sort()).toEqual(['call', 'on']);
  });

  it('reaches every desktop channel of the contract and nothing else', async () => {
    expect([...ipcMainHandlers.keys()].sort()).toEqual(channelsFor('electron').sort());
    const status = (await exposed.call('status.get', {})) as { user: { sub: string } };
    expect(status.user.sub).toBe('alice');
    app.append(sampleToolCall(1));
    await expect(exposed.call('audit.get', { seq: 1 })).resolves.toMatchObject({ seq: 1, tool: 'update_appointment' });
  });

  it('refuses a channel the contract does not list for the desktop, before any IPC', async () => {
    for (const name of ['approvals.decide', 'constructor', '__proto__', 'audit.delete']) {
      await expect(exposed.call(name, {})).rejects.toMatchObject({ code: 'NOT_FOUND' });
    }
  });

  it('passes errors through as {code, message}', async () => {
    await expect(exposed.call('audit.get', { seq: 424242 })).rejects.toEqual({ code: 'NOT_FOUND', message: 'No record 424242.' });
    await expect(exposed.call('audit.get', { seq: 'x' })).rejects.toMatchObject({ code: 'INPUT_INVALID' });
  });

  it('relays only the contract’s events, and stops when unsubscribed', () => {
    const seen: unknown[] = [];
    const off = exposed.on('audit.appended', (p) => seen.push(p));
    const offUnknown = exposed.on('shell.exec', (p) => seen.push(p));
    renderer.emit(EVENT_CHANNEL, {}, 'audit.appended', { seq: 7 });
    renderer.emit(EVENT_CHANNEL, {}, 'status.changed', { x: 1 });
    renderer.emit(EVENT_CHANNEL, {}, 'shell.exec', { cmd: 'x' });
    off();
    offUnknown();
    renderer.emit(EVENT_CHANNEL, {}, 'audit.appended', { seq: 8 });
    expect(seen).toEqual([{ seq: 7 }]);
    expect(renderer.listenerCount(EVENT_CHANNEL)).toBe(0);
  });
});
