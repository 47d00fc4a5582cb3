/**
 * V8 options for a process that hosts the core. `--liftoff-only` keeps libpg-query's grammar (one large
 * WebAssembly function) on V8's baseline compiler: optimising it at the first parse costs the process
 * hundreds of MB for a second, for a parse a few µs faster. `--max-semi-space-size=4
 * --max-old-space-size=256` (MB) hold the heap near its live size: with V8's defaults it grew with the
 * per-call allocation rate and RSS kept the pages. The measurements are in docs/benchmarks.md ("Memory
 * and what is left behind").
 *
 * V8 reads its options only when it starts (on Node 24, `v8.setFlagsFromString` afterwards does not
 * change the compiler tier), so every launcher passes them: `npm start`, `npm run serve` and `npm run
 * demo` (package.json), the bridge when it starts `countersign serve` (bridge/main.ts), the benchmark,
 * and the desktop shell for its utility process (`utilityProcessExecArgv`). `countersign serve|start`
 * run without them replaces its process with one that has them where Node can (bin/countersign.mjs,
 * which names the same list: a shebang cannot carry options everywhere).
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
