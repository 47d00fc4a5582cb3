/** The timeline's integrity badge: the audit chain's last verification, and a button to run it again. */
import { useCallback, useEffect, useState } from 'react';
import type { Transport, VerifyResult } from '../../../common/contract.ts';
import { Badge, ErrorNote, formatTime, plural } from '../components/common.tsx';
import { useAction, useTransport } from '../lib/use-app.ts';

/**
 * The last verification per transport, kept across visits to the screen: walking the chain reads every
 * record, so it runs once when the timeline is first shown (after its first page) and again on request.
 */
const verified = new WeakMap<Transport, VerifyResult>();

export function IntegrityBadge({ ready, head }: { ready: boolean; head: number }) {
  const transport = useTransport();
  const [result, setResult] = useState<VerifyResult | null>(() => verified.get(transport) ?? null);
  const action = useAction();
  const newer = result?.ok && result.head ? Math.max(0, head - result.head.seq) : 0;
  const verify = useCallback(() => {
    void action.run(async () => {
      const r = await transport.call('audit.verify', {});
      verified.set(transport, r);
      setResult(r);
    });
    // `action.run` is stable; the transport is the only input.
  }, [transport]);
  useEffect(() => {
    if (ready && !verified.has(transport)) verify();
  }, [ready, transport, verify]);
  const label = !result
    ? 'Checking the chain…'
    : result.ok
      ? `Chain intact · ${plural(result.checked, 'record')}${result.anchored ? ' · anchored' : ''}`
      : `Chain broken at #${result.firstBad?.seq ?? '?'}: ${result.firstBad?.reason ?? ''}`;
  return (
    <span className="integrity" role="status" aria-live="polite">
      <Badge tone={!result ? 'muted' : result.ok ? 'ok' : 'bad'} label={`Integrity: ${label}`}>
        {result?.ok === false ? '⚠ ' : result ? '✓ ' : ''}
        {label}
      </Badge>{' '}
      {result && (
        <span className="muted small">
          as of {formatTime(result.verifiedAt)}
          {newer > 0 && <> · {plural(newer, 'newer record')} not yet checked</>}
        </span>
      )}
      <button type="button" className="link" onClick={verify} disabled={action.busy}>
        Verify
      </button>
      <ErrorNote error={action.error} />
    </span>
  );
}
