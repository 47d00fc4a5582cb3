/**
 * The lab IdP's sign-in pages (`/interaction/<uid>`): the login form with the lab users' passwords and,
 * when the request asks for it, the one-time code; consent is implied for the lab's clients.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import { APP_RESOURCE } from './token-exchange.ts';
import { html, loginPage, messagePage } from './pages.ts';
import { ACR_MFA, ACR_PASSWORD, LAB_ONE_TIME_CODE, LAB_USERS } from './users.ts';

function readForm(req: IncomingMessage): Promise<URLSearchParams> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > 16 * 1024) req.destroy();
      else chunks.push(c);
    });
    req.on('end', () => resolve(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))));
    req.on('error', reject);
  });
}

/** Answers one request to the interaction `uid`: the page, a login, or an abort. */
export async function interaction(
  deps: { provider: Provider; log: (line: string) => void },
  req: IncomingMessage,
  res: ServerResponse,
  uid: string,
  action: string | undefined,
): Promise<void> {
  const { provider, log } = deps;
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid)
    return html(res, 400, messagePage('Sign-in error', 'This sign-in page has expired.'));
  const client = await provider.Client.find(String(details.params.client_id));
  const clientName = client?.clientName ?? String(details.params.client_id);
  const wantsMfa = String(details.params.acr_values ?? '')
    .split(' ')
    .includes(ACR_MFA);

  if (details.prompt.name !== 'login') {
    // consent: implied for the lab's clients (see loadExistingGrant)
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({
          clientId: String(details.params.client_id),
          accountId: details.session!.accountId,
        });
    grant!.addOIDCScope('openid profile email offline_access');
    grant!.addResourceScope(APP_RESOURCE, 'countersign');
    const grantId = await grant!.save();
    return provider.interactionFinished(
      req,
      res,
      { consent: { grantId } },
      { mergeWithLastSubmission: true },
    );
  }
  if (req.method === 'GET' && action === undefined)
    return html(res, 200, loginPage({ uid, clientName, wantsMfa }));
  if (req.method === 'POST' && action === 'abort') {
    return provider.interactionFinished(
      req,
      res,
      { error: 'access_denied', error_description: 'The user cancelled the sign-in.' },
      { mergeWithLastSubmission: false },
    );
  }
  if (req.method === 'POST' && action === 'login') {
    const form = await readForm(req);
    const username = form.get('username') ?? '';
    const user = LAB_USERS.find((u) => u.username === username);
    if (!user || form.get('password') !== user.password) {
      log(`idp: login failed user=${username.slice(0, 40)}`);
      return html(
        res,
        200,
        loginPage({ uid, clientName, wantsMfa, username, error: 'Wrong username or password.' }),
      );
    }
    const otp = form.get('otp') ?? '';
    if (wantsMfa && otp !== LAB_ONE_TIME_CODE) {
      return html(
        res,
        200,
        loginPage({ uid, clientName, wantsMfa, username, error: 'Wrong one-time code.' }),
      );
    }
    const mfa = otp === LAB_ONE_TIME_CODE;
    log(`idp: login ok user=${user.username} acr=${mfa ? ACR_MFA : ACR_PASSWORD}`);
    return provider.interactionFinished(
      req,
      res,
      {
        login: {
          accountId: user.sub,
          acr: mfa ? ACR_MFA : ACR_PASSWORD,
          amr: mfa ? ['pwd', 'otp'] : ['pwd'],
        },
      },
      { mergeWithLastSubmission: false },
    );
  }
  html(res, 405, messagePage('Sign-in error', 'Method not allowed.'));
}
