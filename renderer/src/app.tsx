import { useEffect, useState, type KeyboardEvent } from 'react';
import type { AppError } from '../../common/errors.ts';
import type { Status, Transport } from '../../common/contract.ts';
import { ErrorNote } from './components/common.tsx';
import { TransportContext, useEvent, useQuery } from './lib/use-app.ts';
import { applyTheme, loadTheme, type Theme } from './lib/theme.ts';
import { ApprovalsScreen } from './screens/approvals.tsx';
import { SettingsScreen } from './screens/settings.tsx';
import { SetupScreen } from './screens/setup.tsx';
import { SignInScreen } from './screens/sign-in.tsx';
import { StatusScreen } from './screens/status.tsx';
import { TimelineScreen } from './screens/timeline.tsx';

export type ScreenName = 'status' | 'timeline' | 'approvals' | 'settings';
const SCREENS: { name: ScreenName; label: string }[] = [
  { name: 'status', label: 'Status' },
  { name: 'timeline', label: 'Timeline' },
  { name: 'approvals', label: 'Approvals' },
  { name: 'settings', label: 'Settings' },
];

export type Connection = 'connecting' | 'live' | 'offline' | 'ended';

function Shell({ connection }: { connection: Connection }) {
  const statusQuery = useQuery('status.get', {});
  const [status, setStatus] = useState<Status | undefined>();
  const [screen, setScreen] = useState<ScreenName>('status');
  const [theme, setThemeState] = useState<Theme>(loadTheme);
  useEffect(() => setStatus(statusQuery.data), [statusQuery.data]);
  useEvent('status.changed', setStatus);
  useEvent('approvals.changed', (snap) => setStatus((s) => (s ? { ...s, pendingApprovals: snap.pending.length } : s)));
  useEffect(() => {
    applyTheme(theme);
    const media = window.matchMedia('(prefers-color-scheme: dark)');
    const onChange = () => applyTheme(theme);
    media.addEventListener('change', onChange);
    return () => media.removeEventListener('change', onChange);
  }, [theme]);

  const onTabKey = (e: KeyboardEvent<HTMLElement>) => {
    const i = SCREENS.findIndex((s) => s.name === screen);
    let next = -1;
    if (e.key === 'ArrowDown' || e.key === 'ArrowRight') next = (i + 1) % SCREENS.length;
    else if (e.key === 'ArrowUp' || e.key === 'ArrowLeft') next = (i + SCREENS.length - 1) % SCREENS.length;
    else if (e.key === 'Home') next = 0;
    else if (e.key === 'End') next = SCREENS.length - 1;
    if (next < 0) return;
    e.preventDefault();
    setScreen(SCREENS[next]!.name);
    document.getElementById(`tab-${SCREENS[next]!.name}`)?.focus();
  };

  if (!status) {
    return (
      <main className="center">
        {statusQuery.error ? <ErrorNote error={statusQuery.error} /> : <p aria-live="polite">Connecting to Countersign…</p>}
      </main>
    );
  }
  if (status.setup) {
    return (
      <main className="content">
        <SetupScreen onSaved={statusQuery.reload} />
      </main>
    );
  }
  return (
    <div className="app">
      {status.demo && (
        <div className="lab-banner" role="note" aria-label="Lab mode">
          Lab — running against the local identity lab, not your organisation’s systems. Records are tagged “lab”.
        </div>
      )}
      {connection !== 'live' && (
        <div className={`conn-banner conn-${connection}`} role="status">
          {connection === 'ended'
            ? 'This page is no longer connected to the app. Open a new link from `countersign serve`.'
            : connection === 'offline'
              ? 'Live updates paused: reconnecting to the app…'
              : 'Connecting for live updates…'}
        </div>
      )}
      {status.claudeDesktop.restartNeeded && (
        <div className="conn-banner" role="status">
          Countersign’s tools changed since Claude Desktop started. Claude Desktop uses only the tools it was given when it started: quit and reopen it to
          use the new ones.
        </div>
      )}
      <div className="frame">
        <nav className="sidebar" aria-label="Screens">
          <div className="brand">Countersign</div>
          <div role="tablist" aria-orientation="vertical" onKeyDown={onTabKey}>
            {SCREENS.map((s) => (
              <button
                key={s.name}
                id={`tab-${s.name}`}
                role="tab"
                type="button"
                aria-selected={screen === s.name}
                aria-controls="screen"
                tabIndex={screen === s.name ? 0 : -1}
                className="tab"
                onClick={() => setScreen(s.name)}
              >
                {s.label}
                {s.name === 'approvals' && status.pendingApprovals > 0 && (
                  <span className="count" aria-label={`${status.pendingApprovals} waiting`}>
                    {status.pendingApprovals}
                  </span>
                )}
              </button>
            ))}
          </div>
          <div className="who small muted">{status.user ? (status.user.name ?? status.user.sub) : 'Not signed in'}</div>
        </nav>
        <main id="screen" role="tabpanel" aria-labelledby={`tab-${screen}`} className="content">
          {!status.user && screen !== 'settings' ? (
            <SignInScreen status={status} />
          ) : screen === 'status' ? (
            <StatusScreen status={status} />
          ) : screen === 'timeline' ? (
            <TimelineScreen />
          ) : screen === 'approvals' ? (
            <ApprovalsScreen host={status.host} />
          ) : (
            <SettingsScreen theme={theme} setTheme={setThemeState} />
          )}
        </main>
      </div>
    </div>
  );
}

export function App({ transport, connection }: { transport: Transport; connection: Connection }) {
  return (
    <TransportContext.Provider value={transport}>
      <Shell connection={connection} />
    </TransportContext.Provider>
  );
}

export function Unavailable({ error }: { error: AppError }) {
  return (
    <main className="center">
      <h1>Countersign</h1>
      <ErrorNote error={error} />
    </main>
  );
}
