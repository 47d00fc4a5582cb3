#!/usr/bin/env node
// Bundles the desktop shell (CommonJS, as Electron's main and sandboxed preload want it), the core's
// utility-process entry, and the headless core `countersign` runs when its bundle is fresh (both ESM; npm
// dependencies stay external: packaged by electron-builder, or found in node_modules).
import { build } from 'esbuild';
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { HEADLESS_BUNDLE, HEADLESS_INPUTS, coreBundleOptions } from './core-bundle.mjs';

const root = fileURLToPath(new URL('..', import.meta.url));
const common = { absWorkingDir: root, bundle: true, platform: 'node', target: 'node22', logLevel: 'warning', legalComments: 'none' };

const [, , , headless] = await Promise.all([
  build({ ...common, entryPoints: ['main/electron/main.ts'], outfile: 'dist/electron/main.cjs', format: 'cjs', external: ['electron', 'electron-updater'], logOverride: { 'empty-import-meta': 'silent' } }),
  build({ ...common, entryPoints: ['main/electron/preload.ts'], outfile: 'dist/electron/preload.cjs', format: 'cjs', external: ['electron'] }),
  build(coreBundleOptions({ root, entry: 'main/core/utility-entry.ts', outfile: 'dist/core/core.mjs' })),
  build(coreBundleOptions({ root, entry: 'main/headless/cli.ts', outfile: HEADLESS_BUNDLE })),
]);
await writeFile(`${root}${HEADLESS_INPUTS}`, JSON.stringify(Object.keys(headless.metafile.inputs)) + '\n');
