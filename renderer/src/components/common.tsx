import { useState, type ReactNode } from 'react';
import type { AppError } from '../../../common/errors.ts';
import { canonicalJsonParts, visibleSegments } from '../lib/visible-text.ts';

/** Text with every invisible or direction-changing character shown as a named escape. Never HTML. */
export function VisibleText({ text, keepNewlines = true }: { text: string; keepNewlines?: boolean }) {
  return (
    <>
      {visibleSegments(text, { keepNewlines }).map((s, i) =>
        s.kind === 'text' ? (
          <span key={i}>{s.text}</span>
        ) : (
          <mark key={i} className="escape" title={s.title} aria-label={`invisible character ${s.title}`}>
            {s.text}
          </mark>
        ),
      )}
    </>
  );
}

/** A value as canonical JSON, long strings cut with a count of what was cut, expandable. */
export function JsonBlock({ value, limit = 160, label }: { value: unknown; limit?: number; label: string }) {
  const [full, setFull] = useState(false);
  const shown = canonicalJsonParts(value, full ? Number.MAX_SAFE_INTEGER : limit);
  return (
    <div className="json-block">
      <pre className="code" aria-label={label} dir="ltr">
        {shown.parts.map((p, i) =>
          p.kind === 'text' ? (
            <VisibleText key={i} text={p.text} />
          ) : (
            <span key={i} className="cut" role="note" aria-label={`${p.count} more characters not shown`}>
              … +{p.count} characters
            </span>
          ),
        )}
      </pre>
      {shown.cut > 0 && (
        <button type="button" className="link" onClick={() => setFull(true)}>
          Show all ({shown.cut} more characters)
        </button>
      )}
    </div>
  );
}

export function ErrorNote({ error }: { error: AppError | null }) {
  if (!error) return null;
  return (
    <p role="alert" className="error-note">
      <strong>{error.code}</strong> {error.message}
    </p>
  );
}

export function Badge({ tone, children, label }: { tone: 'ok' | 'warn' | 'bad' | 'info' | 'muted'; children: ReactNode; label?: string }) {
  return (
    <span className={`badge badge-${tone}`} aria-label={label}>
      {children}
    </span>
  );
}

export function CopyButton({ value, label }: { value: string; label: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <button
      type="button"
      className="copy"
      aria-label={`Copy ${label}`}
      onClick={() => {
        void navigator.clipboard?.writeText(value).then(
          () => {
            setCopied(true);
            setTimeout(() => setCopied(false), 1200);
          },
          () => setCopied(false),
        );
      }}
    >
      {copied ? 'Copied' : 'Copy'}
    </button>
  );
}

export function formatMs(ms: number): string {
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 100) return `${Math.round(ms)} ms`;
  return `${ms.toFixed(1)} ms`;
}

/** `1 record`, `2,000 records`. */
export function plural(n: number, noun: string): string {
  return `${n.toLocaleString()} ${noun}${n === 1 ? '' : 's'}`;
}

export function formatTime(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { hour12: false });
}

export const OUTCOME_TONE: Record<string, 'ok' | 'warn' | 'bad' | 'info' | 'muted'> = {
  success: 'ok',
  denied: 'warn',
  error: 'bad',
  cancelled: 'muted',
  timeout: 'warn',
  aborted: 'bad',
  info: 'info',
};
