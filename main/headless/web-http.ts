/**
 * The web host's HTTP plumbing: the security headers every answer carries (a CSP with no inline script
 * and `frame-ancestors 'none'`, no referrer, no caching), JSON answers, refusals as `{code, message}`
 * with a logged reason, and request bodies read with a size limit.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AppError, type ErrorCode, type WireError } from '../../common/errors.ts';

const MAX_BODY = 1024 * 1024;

const STATUS_OF: Partial<Record<ErrorCode, number>> = {
  INPUT_INVALID: 400,
  WEB_UNAUTHORIZED: 401,
  WEB_FORBIDDEN: 403,
  NOT_FOUND: 404,
  NOT_SIGNED_IN: 409,
  INTERNAL: 500,
};

/** How the host answers; `securityHeaders` reads the host as it is once the server listens. */
export interface Responder {
  securityHeaders(): Record<string, string>;
  sendJson(res: ServerResponse, status: number, body: unknown): void;
  /** Sends `{code, message}`; `why` (never a header value or a body) goes to the log. */
  refuse(res: ServerResponse, code: ErrorCode, message: string, why?: string): void;
}

export function responder(hostOf: () => string, log: (line: string) => void): Responder {
  const securityHeaders = (): Record<string, string> => ({
    'Content-Security-Policy': [
      "default-src 'none'",
      "script-src 'self'",
      "style-src 'self'",
      "img-src 'self' data:",
      "font-src 'self'",
      `connect-src 'self' ws://${hostOf()}`,
      "base-uri 'none'",
      "form-action 'none'",
      "frame-ancestors 'none'",
    ].join('; '),
    'X-Frame-Options': 'DENY',
    'X-Content-Type-Options': 'nosniff',
    'Referrer-Policy': 'no-referrer',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Resource-Policy': 'same-origin',
    'Cache-Control': 'no-store',
  });
  const sendJson = (res: ServerResponse, status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, {
      ...securityHeaders(),
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(text),
    });
    res.end(text);
  };
  const refuse = (res: ServerResponse, code: ErrorCode, message: string, why?: string): void => {
    if (why) log(`web: refused (${code}): ${why}`);
    sendJson(res, STATUS_OF[code] ?? 422, { code, message } satisfies WireError);
  };
  return { securityHeaders, sendJson, refuse };
}

/** The request's JSON body (`{}` when empty); INPUT_INVALID when over 1 MiB or not JSON. */
export function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolveBody, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        reject(new AppError('INPUT_INVALID', 'The request is too large.'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text === '') return resolveBody({});
      try {
        resolveBody(JSON.parse(text));
      } catch (err) {
        reject(new AppError('INPUT_INVALID', 'The request is not JSON.', { cause: err }));
      }
    });
    req.on('error', (err) => reject(AppError.from(err, 'INPUT_INVALID', 'The request could not be read.')));
  });
}

/** The bearer in an `Authorization: Bearer …` header, or null. */
export function bearerOf(req: IncomingMessage): string | null {
  const header = req.headers.authorization;
  if (typeof header !== 'string') return null;
  const match = /^Bearer ([A-Za-z0-9_-]{1,200})$/.exec(header);
  return match ? match[1]! : null;
}
