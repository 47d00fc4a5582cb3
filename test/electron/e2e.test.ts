import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

// The desktop app end to end with Playwright's `_electron`, wherever an Electron binary exists
// (ELECTRON_OVERRIDE_DIST_PATH, or node_modules/electron/dist after Electron's own download). On the
// build machines no binary can be downloaded, so the spec reports that it was skipped and why.
const require = createRequire(import.meta.url);
function electronBinary(): string | null {
  const override = process.env.ELECTRON_OVERRIDE_DIST_PATH;
  const candidates = [
    override && path.join(override, process.platform === 'darwin' ? 'Electron.app/Contents/MacOS/Electron' : 'electron'),
    path.join(path.dirname(require.resolve('electron/package.json')), 'dist', 'electron'),
  ].filter((c): c is string => !!c);
  return candidates.find((c) => existsSync(c)) ?? null;
}
const binary = electronBinary();
const main = path.resolve('dist/electron/main.cjs');
const why = !binary
  ? 'no Electron binary on this machine (it cannot be downloaded here; set ELECTRON_OVERRIDE_DIST_PATH to run it)'
  : !existsSync(main)
    ? 'dist/electron/main.cjs is missing (run npm run build)'
    : '';
if (why) console.warn(`[electron e2e] skipped: ${why}`);

describe.skipIf(!!why)(`the desktop app in Electron${why ? ` — skipped: ${why}` : ''}`, () => {
  it('opens a hardened window on the app:// origin whose page has no Node', async () => {
    const { _electron } = await import('playwright-core');
    const app = await _electron.launch({ executablePath: binary!, args: [main, '--demo'] });
    try {
      const page = await app.firstWindow();
      expect(page.url()).toBe('app://countersign/index.html');
      expect(await page.evaluate(() => typeof (globalThis as { require?: unknown }).require)).toBe('undefined');
      expect(await page.evaluate(() => Object.keys((globalThis as unknown as Record<string, object>).countersign ?? {}).sort())).toEqual(['call', 'on']);
    } finally {
      await app.close();
    }
  });
});
