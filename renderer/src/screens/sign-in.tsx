import type { Status } from '../../../common/contract.ts';
import { ErrorNote } from '../components/common.tsx';
import { useAction, useTransport } from '../lib/use-app.ts';

/**
 * Why no sign-in will be kept: the keychain's own reason (what the host found at start, and what to
 * do). The screen is shown while nobody is signed in, so it says this before the sign-in, not after.
 */
function NotKept({ status }: { status: Status }) {
  if (status.keychain?.persistent !== false) return null;
  return (
    <p role="note" aria-label="OS keychain" className="muted" data-code={status.keychain.code}>
      {status.keychain.reason}
    </p>
  );
}

export function SignInScreen({ status }: { status: Status }) {
  const transport = useTransport();
  const signIn = useAction();
  return (
    <section aria-labelledby="sign-in-title" className="screen sign-in">
      <h1 id="sign-in-title">Sign in</h1>
      <p>
        Countersign makes every tool call Claude makes carry your identity. Sign in once with your identity provider; each call then gets
        its own short-lived credential.
      </p>
      <p className="muted">
        Identity provider: <span className="mono">{status.idp.issuer}</span>
      </p>
      <button
        type="button"
        className="primary"
        disabled={signIn.busy}
        onClick={() => void signIn.run(() => transport.call('session.signIn', {}))}
      >
        {signIn.busy ? 'Waiting for the browser…' : 'Sign in with your identity provider'}
      </button>
      {status.session.state === 'needs_sign_in' && status.session.reason && (
        <p role="alert" className="muted">
          {status.session.reason}
        </p>
      )}
      {status.session.state === 'signing_in' && status.session.url ? (
        <div className="sign-in-url" aria-live="polite">
          <p>If no browser window opened, open this address to continue signing in:</p>
          <p>
            <a href={status.session.url} target="_blank" rel="noopener noreferrer" className="mono">
              {status.session.url}
            </a>
          </p>
          {status.session.userCode && (
            <p>
              Code to enter: <strong className="mono">{status.session.userCode}</strong>
            </p>
          )}
        </div>
      ) : (
        signIn.busy && <p className="muted">Finish signing in in the browser window that opened.</p>
      )}
      <NotKept status={status} />
      <ErrorNote error={signIn.error} />
    </section>
  );
}
