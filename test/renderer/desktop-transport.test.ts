/**
 * The renderer's desktop transport (renderer/src/transport/preload-transport.ts) over the real preload
 * and the real IPC handlers, against an Electron test double (the Electron binary cannot exist here):
 * the double's `contextBridge` records what the preload exposes and its `ipcRenderer.invoke` reaches
 * the handlers of main/electron/ipc.ts, which call the in-memory fixture app.
 */
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { PRELOAD_GLOBAL, type Channel } from '../../common/contract.ts';
import { exposedInMainWorld, ipcMain } from '../helpers/preload-double.ts';
import { createFixtureApp } from '../helpers/ui.ts';

vi.mock('electron', () => import('../helpers/preload-double.ts'));

const app = createFixtureApp();
const asked: unknown[] = [];

beforeAll(async () => {
  app.handlers['audit.saveExport'] = async (request) => {
    asked.push(request);
    return { saved: true as const, path: '/home/alice/Downloads/audit.jsonl', records: 3, bytes: 1234 };
  };
  const ipc = await import('../../main/electron/ipc.ts');
  ipc.registerIpcHandlers(
    ipcMain as never,
    { call: (method, params) => (app.handlers[method as Channel] as (p: unknown) => Promise<unknown>)(params) },
  );
  await import('../../main/electron/preload.ts');
  (globalThis as Record<string, unknown>).window = { [PRELOAD_GLOBAL]: exposedInMainWorld.get(PRELOAD_GLOBAL) };
});

describe("the renderer's desktop transport", () => {
  it('saves an export through audit.saveExport: the request names no path, the answer says where it went', async () => {
    const { preloadTransport } = await import('../../renderer/src/transport/preload-transport.ts');
    const transport = preloadTransport()!;
    const saved = await transport.saveExport!({ format: 'jsonl', filter: { outcome: ['denied', 'error'] } });
    expect(saved).toEqual({ saved: true, path: '/home/alice/Downloads/audit.jsonl', records: 3, bytes: 1234 });
    expect(asked).toEqual([{ format: 'jsonl', filter: { outcome: ['denied', 'error'] } }]);
  });

  it('refuses a request that names a path before the core sees it: the path is the save dialog’s alone', async () => {
    const exposed = exposedInMainWorld.get(PRELOAD_GLOBAL) as { call(c: string, r: unknown): Promise<unknown> };
    await expect(exposed.call('audit.saveExport', { format: 'csv', filter: {}, path: '/etc/passwd' })).rejects.toMatchObject({ code: 'INPUT_INVALID' });
    expect(asked).toHaveLength(1);
  });
});
