/**
 * Imported first by main.ts, so it runs before any module that takes Node's built-ins with
 * process.getBuiltinModule (Node 20.16 and 22.3 on): on an older Node the bridge says why it cannot
 * run, on stderr (Claude Desktop shows a server's stderr in its MCP log), instead of a TypeError.
 */
export const MINIMUM_NODE = '20.16.0';

if (typeof process.getBuiltinModule !== 'function') {
  process.stderr.write(`Countersign's bridge needs Node.js ${MINIMUM_NODE} or newer; this is ${process.version}. Update Node.js, or install countersign.mcpb in Claude Desktop, which brings its own.\n`);
  process.exit(1);
}
