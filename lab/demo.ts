/**
 * `npm run demo`: starts the local lab and the app on it, headless (the web UI on 127.0.0.1), and prints
 * what a first-time user needs: the UI's URL, the demo users and the Claude Desktop entry. The app shows
 * a banner and tags every audit record while it runs on the lab. Ctrl-C stops both and leaves nothing.
 */
import { mkdir, rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { AuthService } from '../main/core/auth/auth-service.ts';
import { parseAppConfig } from '../main/core/config/config.ts';
import { mcpConfigEntry } from '../main/core/claude-desktop/config.ts';
import { openExternal } from '../main/headless/open-external.ts';
import { serve, stderrLog, untilSignal } from '../main/headless/start.ts';
import { labAppConfig } from './app-config.ts';
import { startLab } from './index.ts';

export async function runDemo(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: { 'no-open': { type: 'boolean', default: false }, home: { type: 'string' }, port: { type: 'string' } },
    strict: true,
  });
  const started = performance.now();
  const home = values.home ?? fileURLToPath(new URL('../.countersign-dev/', import.meta.url));
  // The lab is new each run (new keys, new database), so its app state starts fresh too.
  await rm(home, { recursive: true, force: true });
  await mkdir(home, { recursive: true, mode: 0o700 });
  const lab = await startLab();
  let served;
  try {
    served = await serve({
      config: parseAppConfig(labAppConfig(lab), 'lab configuration'),
      home,
      port: values.port ? Number(values.port) : undefined,
      log: stderrLog('countersign'),
    });
  } catch (error) {
    await lab.stop();
    throw error;
  }
  const entry = mcpConfigEntry({ countersignHome: home });
  const stopRequested = untilSignal(); // listening before anything is printed that a script could act on
  const out = process.stdout;
  out.write(`
  ╭───────────────────────────────────────────────────────────────────────╮
  │  Countersign — running on the LOCAL LAB (demo identities, throwaway data)  │
  ╰───────────────────────────────────────────────────────────────────────╯
  Ready in ${((performance.now() - started) / 1000).toFixed(1)} s.

  App (open once; it signs you in with the lab IdP):
    ${served.url}

  Demo users (username / password):
${lab.users.map((u) => `    ${u.username.padEnd(6)} / ${u.password.padEnd(14)} ${u.name} (${u.role})`).join('\n')}
  Lab one-time code for step-up: 246810   Lab "phone" for push approvals: ${lab.issuer}/lab/phone

  Claude Desktop: press "Connect Claude Desktop" in the app, or add this to claude_desktop_config.json:
    "countersign": ${JSON.stringify(entry)}

  Lab endpoints: IdP ${lab.issuer} · Vault ${lab.vaultAddr} · PostgreSQL ${lab.postgresUrl} · MCP ${lab.upstreamMcpUrl}
  Ctrl-C stops the app and the lab.
`);
  if (!values['no-open']) void openExternal(served.url).catch(() => undefined);
  await stopRequested;
  // The lab's IdP goes away with its clients and sessions: what this run kept in the keychain for it goes too.
  if (served.core.auth instanceof AuthService) await served.core.auth.forgetIdp().catch(() => undefined);
  await served.stop();
  await lab.stop();
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  runDemo(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`demo: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}
