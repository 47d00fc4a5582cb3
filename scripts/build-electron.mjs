#!/usr/bin/env node
// Bundles the desktop shell (CommonJS, as Electron's main and sandboxed preload want it) and the core's
// utility-process entry (ESM; npm dependencies stay external and are packaged by electron-builder).
import { build } from 'esbuild';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const common = { absWorkingDir: root, bundle: true, platform: 'node', target: 'node22', logLevel: 'warning', legalComments: 'none' };

await Promise.all([
  build({ ...common, entryPoints: ['main/electron/main.ts'], outfile: 'dist/electron/main.cjs', format: 'cjs', external: ['electron', 'electron-updater'], logOverride: { 'empty-import-meta': 'silent' } }),
  build({ ...common, entryPoints: ['main/electron/preload.ts'], outfile: 'dist/electron/preload.cjs', format: 'cjs', external: ['electron'] }),
  build({
    ...common,
    entryPoints: ['main/core/utility-entry.ts'],
    outfile: 'dist/core/core.mjs',
    format: 'esm',
    packages: 'external',
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  }),
]);
