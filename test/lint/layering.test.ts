import { ESLint } from 'eslint';
import { describe, expect, it } from 'vitest';

// Lints snippets as if they lived in each folder, with the project's own eslint.config.js.
const eslint = new ESLint({ cwd: process.cwd() });

async function violations(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).filter((m) => m.ruleId?.startsWith('no-restricted')).map((m) => m.message);
}

describe('import layering', () => {
  it('rejects the renderer importing the core', async () => {
    const found = await violations('renderer/src/x.ts', "import { x } from '../../main/core/broker/broker.ts';\nexport { x };\n");
    expect(found.join('\n')).toMatch(/renderer reaches the app only through the contract/);
  });

  it('rejects the renderer importing node built-ins', async () => {
    const found = await violations('renderer/src/x.ts', "import { readFileSync } from 'node:fs';\nexport { readFileSync };\n");
    expect(found).toHaveLength(1);
  });

  it('rejects the bridge importing the core or any package', async () => {
    expect(await violations('bridge/x.ts', "import { x } from '../main/core/mcp/server.ts';\nexport { x };\n")).toHaveLength(1);
    expect(await violations('bridge/x.ts', "import { z } from 'zod';\nexport { z };\n")).toHaveLength(1);
    expect(await violations('bridge/x.ts', "import net from 'node:net';\nimport { AppError } from '../common/errors.ts';\nexport { net, AppError };\n")).toEqual([]);
  });

  it('rejects electron anywhere but main/electron', async () => {
    expect(await violations('main/core/x.ts', "import { app } from 'electron';\nexport { app };\n")).toHaveLength(1);
    expect(await violations('common/x.ts', "import { app } from 'electron';\nexport { app };\n")).toHaveLength(1);
    expect(await violations('main/electron/x.ts', "import { app } from 'electron';\nexport { app };\n")).toEqual([]);
  });

  it('rejects common importing node built-ins or using DOM and Node globals', async () => {
    expect(await violations('common/x.ts', "import os from 'node:os';\nexport { os };\n")).toHaveLength(1);
    expect(await violations('common/x.ts', 'export const h = () => window.location.href;\n')).toHaveLength(1);
    expect(await violations('common/x.ts', 'export const e = () => process.env.HOME;\n')).toHaveLength(1);
  });

  it('rejects the core importing the lab', async () => {
    expect(await violations('main/core/x.ts', "import { startLab } from '../../lab/index.ts';\nexport { startLab };\n")).toHaveLength(1);
  });
});
