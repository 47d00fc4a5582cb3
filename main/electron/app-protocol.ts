/**
 * Serves the packaged renderer under `app://countersign/`, so the app's pages have an origin of their
 * own (IPC handlers check it) and never load from a file:// URL or the network.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Net, Protocol } from 'electron';
import { APP_HOST, APP_SCHEME } from './hardening.ts';

export const APP_SCHEME_PRIVILEGES = {
  scheme: APP_SCHEME,
  privileges: { standard: true, secure: true, supportFetchAPI: true, corsEnabled: false, stream: false },
} as const;

/** Maps an app:// URL to a file inside `root`, or null when it points anywhere else. */
export function resolveAppFile(root: string, url: string): string | null {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return null;
  }
  if (u.protocol !== `${APP_SCHEME}:` || u.host !== APP_HOST) return null;
  const relative = decodeURIComponent(u.pathname === '/' ? '/index.html' : u.pathname);
  const file = path.resolve(root, '.' + relative);
  return file === root || file.startsWith(root + path.sep) ? file : null;
}

export function registerAppProtocol(protocol: Pick<Protocol, 'handle'>, net: Pick<Net, 'fetch'>, root: string): void {
  protocol.handle(APP_SCHEME, (request) => {
    const file = resolveAppFile(root, request.url);
    if (!file) return new Response('Not found', { status: 404 });
    return net.fetch(pathToFileURL(file).toString());
  });
}
