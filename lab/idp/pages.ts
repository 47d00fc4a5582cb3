/** HTML of the lab IdP's own pages: the login page and the pretend phone. No script; escaped text. */
import type { ServerResponse } from 'node:http';

export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

export const PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

/** Sends one of these pages with its CSP, never cached. */
export function html(res: ServerResponse, status: number, body: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    'content-security-policy': PAGE_CSP,
    'cache-control': 'no-store',
    'x-content-type-options': 'nosniff',
  });
  res.end(body);
}

function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · Countersign lab</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1d1f23}
.banner{background:#b3261e;color:#fff;padding:.6rem 1rem;font-weight:600}
main{max-width:28rem;margin:2rem auto;background:#fff;padding:1.5rem;border-radius:.5rem;box-shadow:0 1px 3px #0002}
label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.5rem;box-sizing:border-box}
button{margin-top:1rem;padding:.5rem 1rem}.error{color:#b3261e}.hint{color:#555;font-size:.9rem}
li{margin:.8rem 0}code{word-break:break-all}
</style></head>
<body><div class="banner" role="banner">Countersign lab · a local identity provider for development and demos</div>
<main>${body}</main></body></html>`;
}

export function loginPage(opts: {
  uid: string;
  clientName: string;
  wantsMfa: boolean;
  error?: string;
  username?: string;
}): string {
  const otp = opts.wantsMfa
    ? `<label for="otp">One-time code</label>
<input id="otp" name="otp" inputmode="numeric" autocomplete="one-time-code" required>
<p class="hint">This sign-in asks for a second factor. The lab's one-time code is <strong>246810</strong>.</p>`
    : '';
  return page(
    'Sign in',
    `<h1>Sign in</h1>
<p>to <strong>${escapeHtml(opts.clientName)}</strong></p>
${opts.error ? `<p class="error" role="alert">${escapeHtml(opts.error)}</p>` : ''}
<form method="post" action="/interaction/${encodeURIComponent(opts.uid)}/login" autocomplete="off">
<label for="username">Username</label>
<input id="username" name="username" autocomplete="username" required autofocus value="${escapeHtml(opts.username ?? '')}">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password" required>
${otp}
<button type="submit">Sign in</button>
</form>
<form method="post" action="/interaction/${encodeURIComponent(opts.uid)}/abort"><button type="submit">Cancel</button></form>
<p class="hint">Demo users: alice, bob, admin (password: &lt;name&gt;-lab-pw).</p>`,
  );
}

export function phonePage(pending: { id: string; user: string; message: string; digest: string }[]): string {
  const items = pending.length
    ? pending
        .map(
          (p) => `<li><strong>${escapeHtml(p.user)}</strong>: ${escapeHtml(p.message)}<br><code>${escapeHtml(p.digest)}</code>
<form method="post" action="/lab/phone/${encodeURIComponent(p.id)}/approve" style="display:inline"><button type="submit">Approve</button></form>
<form method="post" action="/lab/phone/${encodeURIComponent(p.id)}/deny" style="display:inline"><button type="submit">Deny</button></form></li>`,
        )
        .join('\n')
    : '<li>No pending requests.</li>';
  return page('Phone', `<h1>Lab phone</h1><p>Pending push approvals (reload to refresh).</p><ul>${items}</ul>`);
}

export function messagePage(title: string, message: string): string {
  return page(title, `<h1>${escapeHtml(title)}</h1><p>${escapeHtml(message)}</p>`);
}
