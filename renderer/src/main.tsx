import { StrictMode, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { AppError } from '../../common/errors.ts';
import { App, Unavailable, type Connection } from './app.tsx';
import { applyTheme, loadTheme } from './lib/theme.ts';
import { preloadTransport } from './transport/preload-transport.ts';
import { connectWebTransport, takeLaunchToken, type RendererTransport, type WebTransport } from './transport/web-transport.ts';
import './styles.css';

applyTheme(loadTheme());

function WebRoot({ ready }: { ready: Promise<WebTransport> }) {
  const [transport, setTransport] = useState<WebTransport | null>(null);
  const [error, setError] = useState<AppError | null>(null);
  const [connection, setConnection] = useState<Connection>('connecting');
  useEffect(() => {
    ready.then(
      (t) => {
        setTransport(t);
        t.onConnection(setConnection);
      },
      (err: unknown) => setError(AppError.from(err)),
    );
  }, [ready]);
  if (error) return <Unavailable error={error} />;
  if (!transport) return <p className="center">Connecting to Countersign…</p>;
  return <App transport={transport} connection={connection} />;
}

const root = createRoot(document.getElementById('root')!);
const desktop: RendererTransport | null = preloadTransport();
if (desktop) {
  root.render(
    <StrictMode>
      <App transport={desktop} connection="live" />
    </StrictMode>,
  );
} else {
  // Taken once, outside React, so a re-render can never exchange it twice.
  const ready = connectWebTransport(takeLaunchToken());
  // WebRoot shows the failure once it mounts; until then the rejection is not unhandled.
  ready.catch(() => undefined);
  root.render(
    <StrictMode>
      <WebRoot ready={ready} />
    </StrictMode>,
  );
}
