import { timingSafeEqual } from 'node:crypto';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AppError } from '../../../common/errors.ts';
import { IDP_STEPS, refusalError } from '../idp/errors.ts';

const CALLBACK_PATH = '/callback';

/** A one-shot redirect receiver for a native app's sign-in (RFC 8252 §7.3). */
export interface LoopbackListener {
  /** `http://127.0.0.1:<port>/callback`, the redirect_uri of this one sign-in. */
  readonly redirectUri: string;
  /** The full callback URL once the browser comes back with the right state; rejects otherwise. */
  readonly callback: Promise<URL>;
  /** Stops listening (idempotent); a pending `callback` rejects with SIGN_IN_CANCELLED. */
  close(): Promise<void>;
}

export interface LoopbackOptions {
  expectedState: string;
  timeoutMs: number;
  signal?: AbortSignal;
}

const PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function page(res: ServerResponse, status: number, title: string, text: string): void {
  const body = `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title><style>body{font:16px system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em}</style></head><body><h1>${title}</h1><p>${text}</p></body></html>`;
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': PAGE_CSP,
    'cache-control': 'no-store',
    'referrer-policy': 'no-referrer',
    'x-content-type-options': 'nosniff',
    connection: 'close',
  });
  res.end(body);
}

function sameState(a: string | null, b: string): boolean {
  if (a === null) return false;
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Listens on 127.0.0.1, on a port the OS picks, for exactly one request to `/callback`. Requests for
 * any other path or with another Host are answered 404/400 and do not count (a browser may ask for
 * /favicon.ico; a page elsewhere may try DNS rebinding). The first callback settles the sign-in and
 * closes the listener, so a second callback finds nothing to talk to. A wrong or missing `state`
 * fails the sign-in (RFC 6749 §10.12); an error callback fails it with the IdP's error code.
 */
export async function startLoopbackListener(options: LoopbackOptions): Promise<LoopbackListener> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new AppError('SIGN_IN_FAILED', 'Could not listen on the loopback interface for the sign-in callback.', { cause: e })));
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const host = `127.0.0.1:${port}`;
  const redirectUri = `http://${host}${CALLBACK_PATH}`;

  let settle!: { resolve: (u: URL) => void; reject: (e: AppError) => void };
  const callback = new Promise<URL>((resolve, reject) => (settle = { resolve, reject }));
  callback.catch(() => undefined);
  let done = false;
  let closed: Promise<void> | undefined;

  const close = (): Promise<void> => {
    closed ??= new Promise<void>((resolve) => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      server.close(() => resolve());
      server.closeIdleConnections();
      setTimeout(() => server.closeAllConnections(), 250).unref();
    });
    return closed;
  };
  const finish = (outcome: URL | AppError) => {
    if (done) return;
    done = true;
    if (outcome instanceof URL) settle.resolve(outcome);
    else settle.reject(outcome);
    void close();
  };
  const onAbort = () => finish(new AppError('SIGN_IN_CANCELLED', 'The sign-in was cancelled.'));
  const timer = setTimeout(
    () => finish(new AppError('SIGN_IN_TIMEOUT', 'The sign-in took too long and was abandoned. Start it again when you are ready.')),
    options.timeoutMs,
  );
  timer.unref?.();
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (req.headers.host !== host) return page(res, 400, 'Bad request', 'This address only answers the sign-in callback.');
    const url = new URL(req.url ?? '/', `http://${host}`);
    if (url.pathname !== CALLBACK_PATH || req.method !== 'GET') return page(res, 404, 'Not found', 'This address only answers the sign-in callback.');
    if (done) return page(res, 410, 'Sign-in already completed', 'This sign-in has already been completed or abandoned. Return to Countersign.');
    if (!sameState(url.searchParams.get('state'), options.expectedState)) {
      page(res, 400, 'Sign-in could not be completed', 'This sign-in response does not belong to the sign-in Countersign started. Return to Countersign and start again.');
      return finish(new AppError('SIGN_IN_STATE_MISMATCH', 'The sign-in response did not match the sign-in that was started (wrong or missing state), so it was refused.'));
    }
    if (url.searchParams.has('error')) {
      page(res, 200, 'Sign-in did not complete', 'Your identity provider did not sign you in. Return to Countersign.');
      return finish(refusalError(IDP_STEPS.authorization, { error: url.searchParams.get('error') ?? '' }));
    }
    page(res, 200, 'Signed in', 'You are signed in to Countersign. You can close this tab and return to the app.');
    finish(url);
  });

  return { redirectUri, callback, close };
}
