// The headless core as one bundled file (dist/core/headless.mjs, built by `npm run build`), and the
// check `bin/countersign.mjs` makes before it runs it. Run from its TypeScript sources, a core pays for
// Node's type stripping for as long as it lives (~18 MB of resident memory here: docs/benchmarks.md);
// bundled, as the desktop app's utility process already runs it, it does not.
//
// No esbuild here: bin/countersign.mjs imports this file on every start, so it must stay cheap.
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

export const HEADLESS_BUNDLE = 'dist/core/headless.mjs';
/** The sources esbuild read for the bundle (its metafile's inputs), written beside it. */
export const HEADLESS_INPUTS = 'dist/core/headless.inputs.json';

/**
 * The esbuild options for a core bundle: npm packages stay external (resolved from the project's
 * node_modules, as from the sources), and `require` works inside ESM for the CommonJS ones.
 */
export function coreBundleOptions({ root, entry, outfile }) {
  return {
    absWorkingDir: root,
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'esm',
    packages: 'external',
    legalComments: 'none',
    metafile: true,
    logLevel: 'warning',
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  };
}

/**
 * True when the bundle exists and none of the sources it was built from changed since: each is
 * present and not newer than the bundle. A checkout, an edit or a deleted file makes it false, and the
 * command then runs from the sources, so a stale bundle never runs.
 */
export function bundleIsFresh(root) {
  try {
    const built = statSync(join(root, HEADLESS_BUNDLE)).mtimeMs;
    const inputs = JSON.parse(readFileSync(join(root, HEADLESS_INPUTS), 'utf8'));
    if (!Array.isArray(inputs) || inputs.length === 0) return false;
    for (const file of inputs) if (typeof file !== 'string' || statSync(join(root, file)).mtimeMs > built) return false;
    return true;
  } catch {
    return false;
  }
}
