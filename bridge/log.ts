/** The bridge's diagnostics: stderr and bridge.log, never message contents. */

// Built-ins through process.getBuiltinModule, not static imports: see relay.ts.
const { appendFileSync, mkdirSync } = process.getBuiltinModule('node:fs');

/** Writes diagnostics to stderr and to `<logDir>/bridge.log`; the log file is best effort. */
export function makeLog(logDir: string): (message: string) => void {
  let file: 'unknown' | 'ok' | 'unusable' = 'unknown';
  return (message) => {
    const line = `${new Date().toISOString()} bridge[${process.pid}] ${message}\n`;
    process.stderr.write(line);
    if (file === 'unusable') return;
    try {
      // created on the first line rather than at start: nothing on the way to the first answer waits for it
      if (file === 'unknown') mkdirSync(logDir, { recursive: true, mode: 0o700 });
      file = 'ok';
      appendFileSync(`${logDir}/bridge.log`, line, { mode: 0o600 });
    } catch {
      file = 'unusable';
    }
  };
}
