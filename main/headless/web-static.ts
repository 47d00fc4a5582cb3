/**
 * Serves the built renderer's files: only files under its directory (resolved through symlinks), only
 * to a request the browser made directly or from the page itself, each with the host's security headers.
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { extname, join, resolve, sep } from 'node:path';
import type { Responder } from './web-http.ts';

const MEDIA_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.map': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
};

/** Answers a GET or HEAD for `pathname` from `staticRoot` (a realpath), or refuses it. */
export async function serveStatic(
  req: IncomingMessage,
  res: ServerResponse,
  pathname: string,
  staticRoot: string,
  http: Responder,
): Promise<void> {
  const { refuse, securityHeaders } = http;
  const site = req.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'none' && site !== 'same-origin') {
    return refuse(res, 'WEB_FORBIDDEN', 'This page can only be opened directly.', `static ${site} request`);
  }
  let relative: string;
  try {
    relative = decodeURIComponent(pathname);
  } catch {
    return refuse(res, 'NOT_FOUND', 'Not found.');
  }
  if (relative === '/' || relative === '/index.html') relative = '/index.html';
  if (relative.includes('\0')) return refuse(res, 'NOT_FOUND', 'Not found.');
  const candidate = resolve(join(staticRoot, relative));
  let file: string;
  try {
    file = await realpath(candidate);
    if (!file.startsWith(staticRoot + sep) || !(await stat(file)).isFile()) throw new Error('outside');
  } catch {
    return refuse(res, 'NOT_FOUND', 'Not found.');
  }
  const body = await readFile(file);
  res.writeHead(200, {
    ...securityHeaders(),
    'Content-Type': MEDIA_TYPES[extname(file)] ?? 'application/octet-stream',
    'Content-Length': body.length,
  });
  res.end(req.method === 'HEAD' ? undefined : body);
}
