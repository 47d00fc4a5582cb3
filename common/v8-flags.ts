/**
 * V8 options for a process that hosts the core. `--liftoff-only`: the first SQL statement the core
 * classifies makes V8 optimise libpg-query's grammar, one ~100 KB WebAssembly function, and that
 * compilation alone takes ~600 MB for about a second (the core peaked at 700 MB in `npm run bench`,
 * 390 MB with this). Kept on V8's baseline compiler a parse costs ~2 µs more (13 µs instead of 11).
 *
 * V8 reads its options only when it starts (on Node 24, `v8.setFlagsFromString` afterwards does not
 * change the compiler tier: docs/benchmarks.md), so every launcher passes them: `npm start`, `npm run
 * serve` and `npm run demo` (package.json), the bridge when it starts `countersign serve`
 * (bridge/main.ts), the benchmark, and the desktop shell for its utility process
 * (`utilityProcessExecArgv`). `countersign serve|start` run without them (`npx countersign serve`)
 * replaces its process with one that has them where Node can (bin/countersign.mjs, which names the
 * same list: a shebang cannot carry options everywhere).
 *
 * `--max-semi-space-size=4 --max-old-space-size=256` (MB): the core keeps ~40 MB live, but allocates
 * ~0.9 MB of short-lived objects per call, and with V8's defaults its heap grew to ~220 MB before a
 * full GC, pages RSS then kept (265 MB after the warm-up). Held to these, the heap stays near 50 MB and
 * the core at ~145 MB (docs/benchmarks.md). 256 MB is six times the live heap, room for 32 calls at once
 * each holding a large result.
 */
export const CORE_V8_FLAGS: readonly string[] = ['--liftoff-only', '--max-semi-space-size=4', '--max-old-space-size=256'];

/**
 * The same options for the core's Electron utility process. Electron turns a utility process's
 * `execArgv` into switches of that process's command line (UtilityProcessWrapper), and gives V8 the
 * `--js-flags` switch of its own command line before V8 starts (JavascriptEnvironment::Initialize);
 * Node ignores the switch. Read from Electron's sources; not run here, where there is no Electron binary.
 */
export function utilityProcessExecArgv(): string[] {
  return [`--js-flags=${CORE_V8_FLAGS.join(' ')}`];
}
