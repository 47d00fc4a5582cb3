import { ESLint } from 'eslint';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LAYERS } from '../../eslint.config.js';

// Lints snippets as if they lived in each folder, with the project's own eslint.config.js.
const eslint = new ESLint({ cwd: process.cwd() });

async function violations(filePath: string, code: string): Promise<string[]> {
  const [result] = await eslint.lintText(code, { filePath });
  return (result?.messages ?? []).filter((m) => m.ruleId?.startsWith('no-restricted') || m.ruleId === 'layering/folders').map((m) => m.message);
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

  it('rejects common importing common/node or any process folder', async () => {
    expect(await violations('common/x.ts', "import { a } from './node/pipe-io.ts';\nexport { a };\n")).toHaveLength(1);
    expect(await violations('common/x.ts', "import { a } from '../main/core/app.ts';\nexport { a };\n")).toHaveLength(1);
    expect(await violations('common/x.ts', "import { AppError } from './errors.ts';\nexport { AppError };\n")).toEqual([]);
  });

  it('lets common/node use Node but not electron, a package or any process folder', async () => {
    const file = 'common/node/x.ts';
    expect((await violations(file, "import { app } from 'electron';\nexport { app };\n")).join('\n')).toMatch(/Only main\/electron/);
    expect(await violations(file, "import { z } from 'zod';\nexport { z };\n")).toHaveLength(1);
    for (const folder of ['main/core/app.ts', 'main/electron/main.ts', 'bridge/relay.ts', 'renderer/src/main.tsx']) {
      expect(await violations(file, `import { a } from '../../${folder}';\nexport { a };\n`), folder).toHaveLength(1);
    }
    expect(await violations(file, 'export const w = () => window.location.href;\n')).toHaveLength(1);
    expect(
      await violations(file, "import fs from 'node:fs';\nimport { AppError } from '../errors.ts';\nexport const pid = () => [fs, AppError, process.pid];\n"),
    ).toEqual([]);
  });

  it('rejects the renderer importing common/node, the bridge or the lab', async () => {
    expect(await violations('renderer/src/x.ts', "import { a } from '../../common/node/pipe-io.ts';\nexport { a };\n")).toHaveLength(1);
    expect(await violations('renderer/src/x.ts', "import { a } from '../../bridge/relay.ts';\nexport { a };\n")).toHaveLength(1);
    expect(await violations('renderer/src/x.ts', "import { a } from '../../lab/index.ts';\nexport { a };\n")).toHaveLength(1);
    expect(await violations('renderer/src/x.ts', "import { AppError } from '../../common/errors.ts';\nexport { AppError };\n")).toEqual([]);
  });

  it('lets the bridge import common/node but not the renderer or the lab', async () => {
    expect(await violations('bridge/x.ts', "import { a } from '../renderer/src/main.tsx';\nexport { a };\n")).toHaveLength(1);
    expect(await violations('bridge/x.ts', "import { a } from '../lab/index.ts';\nexport { a };\n")).toHaveLength(1);
    expect(await violations('bridge/x.ts', "import { a } from '../common/node/pipe-io.ts';\nexport { a };\n")).toEqual([]);
  });

  it('rejects electron in the bridge and the renderer', async () => {
    expect((await violations('bridge/x.ts', "import { app } from 'electron';\nexport { app };\n")).join('\n')).toMatch(/Only main\/electron/);
    expect(await violations('renderer/src/x.ts', "import { app } from 'electron';\nexport { app };\n")).toHaveLength(1);
  });

  it('rejects the shell importing the core, the headless host, the bridge, the renderer or the lab', async () => {
    const file = 'main/electron/x.ts';
    for (const target of ['../core/broker/broker.ts', '../../main/core/app.ts', '../headless/start.ts', '../../bridge/relay.ts', '../../renderer/src/main.tsx', '../../lab/index.ts']) {
      expect(await violations(file, `import { a } from '${target}';\nexport { a };\n`), target).toHaveLength(1);
    }
    // no exception: what the shell and the core both need (the core's V8 options) is in common/
    expect(await violations(file, "import { utilityProcessExecArgv } from '../core/v8-flags.ts';\nexport { utilityProcessExecArgv };\n")).toHaveLength(1);
    expect(await violations(file, "import { utilityProcessExecArgv } from '../../common/v8-flags.ts';\nexport { utilityProcessExecArgv };\n")).toEqual([]);
    expect(await violations(file, "import { app } from 'electron';\nimport { AppError } from '../../common/errors.ts';\nexport { app, AppError };\n")).toEqual([]);
  });

  it('rejects the core importing the shell or its hosts', async () => {
    expect(await violations('main/core/x.ts', "import { a } from '../electron/ipc.ts';\nexport { a };\n")).toHaveLength(1);
    expect(await violations('main/core/broker/x.ts', "import { a } from '../../electron/ipc.ts';\nexport { a };\n")).toHaveLength(1);
    expect(await violations('main/core/broker/x.ts', "import { a } from '../../headless/start.ts';\nexport { a };\n")).toHaveLength(1);
    expect(await violations('main/core/broker/x.ts', "import { a } from '../../../common/node/pipe-io.ts';\nexport { a };\n")).toEqual([]);
  });

  it('rejects the headless host importing the shell or the lab, and lets it host the core', async () => {
    expect(await violations('main/headless/x.ts', "import { a } from '../electron/ipc.ts';\nexport { a };\n")).toHaveLength(1);
    expect(await violations('main/headless/x.ts', "import { a } from '../../lab/index.ts';\nexport { a };\n")).toHaveLength(1);
    expect(await violations('main/headless/x.ts', "import { a } from '../core/app.ts';\nexport { a };\n")).toEqual([]);
  });

  it('rejects product code importing the lab from every folder', async () => {
    for (const file of ['main/electron/x.ts', 'main/core/x.ts', 'main/headless/x.ts', 'bridge/x.ts', 'common/x.ts', 'common/node/x.ts', 'renderer/x.ts']) {
      const depth = file.split('/').length - 1;
      const up = '../'.repeat(depth);
      expect(await violations(file, `import { a } from '${up}lab/index.ts';\nexport { a };\n`), file).toHaveLength(1);
    }
  });

  it('lets tests and benchmarks import any layer', async () => {
    const code =
      "import { app } from 'electron';\nimport { a } from '../../main/core/app.ts';\nimport { b } from '../../lab/index.ts';\nimport { c } from '../../main/electron/ipc.ts';\nexport { app, a, b, c };\n";
    expect(await violations('test/x/x.test.ts', code)).toEqual([]);
    expect(await violations('bench/x/x.ts', code)).toEqual([]);
  });

  it('decides every pair of top-level folders: each import is refused unless LAYERS lets that folder import the other', async () => {
    const folders = Object.keys(LAYERS);
    const wrong: string[] = [];
    for (const from of folders) {
      const file = `${from}/sub/x.ts`;
      for (const to of folders) {
        const spec = path.posix.relative(path.posix.dirname(file), `${to}/y.ts`);
        const found = await violations(file, `import { a } from '${spec.startsWith('.') ? spec : `./${spec}`}';\nexport { a };\n`);
        const may = LAYERS[from]!.may;
        const allowed = from === to || may === '*' || may.includes(to);
        if (allowed !== (found.length === 0)) wrong.push(`${from} → ${to}: ${allowed ? 'allowed' : 'refused'} by LAYERS, lint said ${JSON.stringify(found)}`);
      }
    }
    expect(wrong).toEqual([]);
    // the refusals this covers, both ways between the shell and the core among them
    expect(LAYERS['main/electron']!.may).not.toContain('main/core');
    expect(LAYERS['main/core']!.may).not.toContain('main/electron');
  });

  it('follows an import to the folder it reaches, however it is spelled', async () => {
    expect(await violations('main/electron/x.ts', "import { a } from '../electron/../core/app.ts';\nexport { a };\n")).toHaveLength(1);
    expect(await violations('main/electron/x.ts', "export * from '../core/app.ts';\n")).toHaveLength(1);
    expect(await violations('main/core/x.ts', "export const a = () => import('../electron/ipc.ts');\n")).toHaveLength(1);
    expect(await violations('main/core/x.ts', "import { a } from '../../test/helpers/ui.ts';\nexport { a };\n")).toHaveLength(1);
  });
});
