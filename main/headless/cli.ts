/**
 * The `countersign` command. Each subcommand lives in its own module and is loaded only when run, so
 * `--help` and the bridge-facing commands start fast.
 */
import { AppError } from '../../common/errors.ts';

interface Command {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number | void>;
}

const commands: Record<string, Command> = {
  start: {
    summary: 'Start Countersign: the desktop app when Electron is available, otherwise `serve`.',
    usage: 'countersign start [--config FILE] [--no-open]',
    run: async (argv) => (await import('./start.ts')).runStart(argv),
  },
  serve: {
    summary: 'Run the app core headless with the web UI on 127.0.0.1 (machines without a desktop).',
    usage: 'countersign serve [--config FILE] [--port N] [--no-open]',
    run: async (argv) => (await import('./start.ts')).runServe(argv),
  },
  open: {
    summary: 'Bring the running Countersign in front: its window, or the web UI with a fresh link.',
    usage: 'countersign open',
    run: async (argv) => (await import('./open.ts')).runOpen(argv),
  },
  'mcp-config': {
    summary: 'Print or install the MCP server entry for Claude Desktop, Claude Code, Cursor and other clients.',
    usage: 'countersign mcp-config [--client claude-desktop|claude-code|cursor] [--install | --uninstall] [--config FILE] [--bridge FILE] [--node FILE]',
    run: async (argv) => (await import('../core/claude-desktop/command.ts')).runMcpConfig(argv),
  },
  doctor: {
    summary: 'Check the identity provider, Vault, databases and upstreams, and say what to fix.',
    usage: 'countersign doctor [--config FILE] [--json] [--no-sign-in]',
    run: async (argv) => (await import('./doctor.ts')).runDoctorCommand(argv),
  },
  audit: {
    summary: 'Export or verify the local audit timeline.',
    usage: 'countersign audit export --format jsonl|csv [--out FILE] | countersign audit verify',
    run: async (argv) => (await import('../core/audit/command.ts')).runAuditCommand(argv),
  },
};

function helpText(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  const lines = [
    'countersign — every tool call Claude makes, carried under your identity and recorded.',
    '',
    'Usage: countersign <command> [options]',
    '',
    'Commands:',
    ...Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `countersign <command> --help` for a command\'s options.',
  ];
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(helpText() + '\n');
    return;
  }
  if (name === '--version' || name === '-v') {
    const { readFile } = await import('node:fs/promises');
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(`${pkg.version}\n`);
    return;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`countersign: unknown command "${name}"\n\n${helpText()}\n`);
    process.exitCode = 2;
    return;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${command.summary}\n\nUsage: ${command.usage}\n`);
    return;
  }
  try {
    const code = await command.run(rest);
    if (typeof code === 'number') process.exitCode = code;
  } catch (error) {
    const e = AppError.from(error);
    process.stderr.write(`countersign ${name}: ${e.message} [${e.code}]\n`);
    process.exitCode = 1;
  }
}
