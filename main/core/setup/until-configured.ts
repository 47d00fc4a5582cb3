/**
 * A host with nothing configured yet, the desktop app's or `serve`'s: it serves the setup screen's
 * channels (./setup.ts), a status that says `setup`, and refuses every other channel with
 * CONFIG_MISSING; once the screen has saved, the host launches the core on the saved configuration and
 * every channel and event is that core's, for pages already open too. Both hosts use this one piece,
 * so the desktop app and the web UI open the same setup screen.
 */
import { CHANNEL_NAMES, type ContractHandlers, type EventName, type EventSubscribe, type Status } from '../../../common/contract.ts';
import { AppError } from '../../../common/errors.ts';
import type { Core } from '../app.ts';
import type { LoadedConfig } from '../config/config.ts';
import { setupHandlers } from './setup.ts';

export interface UntilConfigured {
  /** Every contract channel: the setup screen's until saved, the core's after. */
  handlers: ContractHandlers;
  events: EventSubscribe;
  /** The core, once the setup screen has saved; undefined before. */
  core(): Core | undefined;
  stop(): Promise<void>;
}

export function untilConfigured(o: {
  /** Where the setup screen writes the configuration. */
  file: string;
  host: Status['host'];
  version: string;
  platform: NodeJS.Platform;
  env: Readonly<Record<string, string | undefined>>;
  /** Starts the core on what the screen saved. */
  launch(loaded: LoadedConfig): Promise<Core>;
  log?: (line: string) => void;
}): UntilConfigured {
  let core: Core | undefined;
  /** Pages subscribed while nothing was configured: they follow the core's events once it runs. */
  type Early = { event: EventName; listener: (payload: never) => void; off?: () => void };
  const early = new Set<Early>();
  const setup = setupModeHandlers(
    setupHandlers({
      file: o.file,
      platform: o.platform,
      env: o.env,
      onSaved: async (loaded) => {
        core = await o.launch(loaded);
        for (const s of early) s.off = core.events(s.event, s.listener as never);
        o.log?.(`Configuration written to ${o.file}; Countersign is running on it.`);
      },
    }),
    o.host,
    o.version,
  );
  const handlers = Object.fromEntries(
    CHANNEL_NAMES.map((name) => [name, (request: unknown) => ((core?.handlers ?? setup)[name] as (r: unknown) => Promise<unknown>)(request)]),
  ) as ContractHandlers;
  const events: EventSubscribe = (event, listener) => {
    if (core) return core.events(event, listener);
    const s: Early = { event, listener: listener as Early['listener'] };
    early.add(s);
    return () => {
      early.delete(s);
      s.off?.();
    };
  };
  return { handlers, events, core: () => core, stop: async () => core?.stop() };
}

/** While nothing is configured: the setup channels, a status that says so, and every other channel refusing. */
function setupModeHandlers(setup: ReturnType<typeof setupHandlers>, host: Status['host'], appVersion: string): ContractHandlers {
  const notYet = async (): Promise<never> => {
    throw new AppError('CONFIG_MISSING', 'Countersign is not configured yet: finish the setup screen first.');
  };
  const refusing = Object.fromEntries(CHANNEL_NAMES.map((name) => [name, notYet])) as unknown as ContractHandlers;
  return {
    ...refusing,
    ...setup,
    'status.get': async () => ({
      host,
      version: appVersion,
      demo: false,
      setup: true,
      user: null,
      session: { state: 'signed_out' as const },
      idp: { issuer: '', state: 'unknown' as const, delegation: 'rar' as const },
      vault: { address: '', state: 'unknown' as const },
      claudeDesktop: { configured: false, connected: false },
      bridgeSessions: [],
      pendingApprovals: 0,
      calls: 0,
    }),
  };
}
