/**
 * `countersign open`: brings the running Countersign in front of the person. It asks the core over its
 * authenticated socket (a control connection, main/core/mcp/control-client.ts): the desktop app shows
 * its window; the headless host answers a fresh launch link, which this command opens in the browser.
 * The web UI keeps its bearer in memory only, so after a closed or reloaded tab this is the way back.
 */
import { controlRequest } from '../core/mcp/control-client.ts';
import { hostPaths } from '../core/mcp/host-paths.ts';
import { openExternal } from './open-external.ts';

export async function runOpen(_argv: string[], deps: { open?: (url: string) => Promise<void>; paths?: ReturnType<typeof hostPaths> } = {}): Promise<number> {
  const answer = await controlRequest(deps.paths ?? hostPaths(), 'open');
  if (typeof answer.url === 'string' && /^http:\/\/127\.0\.0\.1:\d+\/#token=/.test(answer.url)) {
    process.stdout.write(`Opening Countersign in your browser:\n  ${answer.url}\n`);
    await (deps.open ?? openExternal)(answer.url);
    return 0;
  }
  process.stdout.write('Countersign’s window is in front.\n');
  return 0;
}
