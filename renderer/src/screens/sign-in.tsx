import type { Status } from '../../../common/contract.ts';
import { ErrorNote } from '../components/common.tsx';
import { useAction, useTransport } from '../lib/use-app.ts';

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
      {signIn.busy && <p className="muted">Finish signing in in the browser window that opened.</p>}
      <ErrorNote error={signIn.error} />
    </section>
  );
}
