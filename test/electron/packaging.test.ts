import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';

// electron-builder's own configuration loader and schema validation (app-builder-lib), run without
// packaging: the Electron zip it would download cannot be fetched here.
const require = createRequire(import.meta.url);
const { getConfig, validateConfiguration } = require('app-builder-lib/out/util/config/config.js') as {
  getConfig(projectDir: string, configPath: string | null, configFromOptions: unknown): Promise<Record<string, unknown>>;
  validateConfiguration(config: unknown, debugLogger: unknown): Promise<void>;
};
const { DebugLogger } = require('builder-util') as { DebugLogger: new (enabled: boolean) => unknown };

describe('electron-builder.yml', () => {
  it("passes electron-builder's own schema", async () => {
    const config = await getConfig(process.cwd(), 'electron-builder.yml', null);
    await expect(validateConfiguration(config, new DebugLogger(false))).resolves.toBeUndefined();
  });

  it('rejects a misspelt option, so the check above can fail', async () => {
    const config = { ...(await getConfig(process.cwd(), 'electron-builder.yml', null)), macc: {} };
    await expect(validateConfiguration(config, new DebugLogger(false))).rejects.toThrow(/macc/);
  });

  it('turns RunAsNode off and leaves the lab out of the package', async () => {
    const text = await readFile('electron-builder.yml', 'utf8');
    expect(text).toMatch(/runAsNode: false/);
    expect(text).toMatch(/'!lab\/\*\*'/);
    expect(text).toMatch(/hardenedRuntime: true/);
  });
});
