/**
 * The pretend phone (`/lab/phone`): the pushes waiting for the user, approved or denied by a form post
 * from the same origin, as the user would on IBM Verify's app.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { html, messagePage, phonePage } from './pages.ts';
import type { PushStore } from './step-up.ts';

/** Answers a `/lab/phone` request; false when the path is not one of its own. */
export async function phone(
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  deps: { push: PushStore; issuer: string; log: (line: string) => void },
): Promise<boolean> {
  const { push, issuer, log } = deps;
  if (url.pathname === '/lab/phone' && req.method === 'GET') {
    html(res, 200, phonePage(push.pending()));
    return true;
  }
  const m = /^\/lab\/phone\/([^/]+)\/(approve|deny)$/.exec(url.pathname);
  if (!m || req.method !== 'POST') return false;
  const origin = req.headers.origin;
  if (origin !== undefined && origin !== issuer) {
    html(res, 403, messagePage('Phone', 'Cross-origin requests are refused.'));
    return true;
  }
  try {
    push.decide(decodeURIComponent(m[1]!), m[2] === 'approve' ? 'VERIFY_SUCCESS' : 'USER_DENIED');
    log(`idp: push ${m[2] === 'approve' ? 'approved' : 'denied'} id=${m[1]} (lab phone)`);
  } catch {
    /* already decided or expired: the list below shows what is left */
  }
  res.writeHead(303, { location: '/lab/phone' });
  res.end();
  return true;
}
