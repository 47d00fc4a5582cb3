/**
 * Starts the privileged core in its own Electron utility process and talks to it over a MessagePort.
 * The shell holds no token or credential: it forwards the UI's contract calls, and answers the core's
 * requests for what only the shell can do (a native dialog, the system browser). Both directions are
 * tables of common/contract.ts; the core's half is main/core/shell-link.ts.
 */
import type { MessageChannelMain, MessagePortMain, UtilityProcess } from 'electron';
import { channelClient, serveChannel, type ChannelHandler } from '../../common/channel.ts';
import { CORE_CHANNELS, EVENTS, SHELL_CHANNELS, isEventName, type EventName, type EventOf } from '../../common/contract.ts';
import { fromEventPort, PortRpc } from '../../common/port-rpc.ts';
import { utilityProcessExecArgv } from '../../common/v8-flags.ts';

export interface CoreHostDeps {
  fork: (modulePath: string, args: string[], options: { serviceName: string; stdio: 'inherit' | 'pipe'; execArgv: string[] }) => UtilityProcess;
  createChannel: () => Pick<MessageChannelMain, 'port1' | 'port2'>;
}

/** What the shell answers when the core asks (SHELL_CHANNELS). */
export type ShellHandlers = { [C in keyof typeof SHELL_CHANNELS]: ChannelHandler<typeof SHELL_CHANNELS, C> };

export interface CoreHost {
  /** Carries the UI's channels to the core (main/electron/ipc.ts validates them on the way). */
  rpc: PortRpc;
  child: UtilityProcess;
  /** The core's events, each parsed with its contract schema before the shell acts on it or passes it on. */
  onEvent(listener: <E extends EventName>(name: E, payload: EventOf<E>) => void): () => void;
  /** Asks the core to drain in-flight calls (revoking what they hold), then ends the process. */
  stop(timeoutMs?: number): Promise<void>;
}

export function startCoreProcess(deps: CoreHostDeps, entry: string, args: string[], shell: ShellHandlers): CoreHost {
  const child = deps.fork(entry, args, { serviceName: 'Countersign core', stdio: 'inherit', execArgv: utilityProcessExecArgv() });
  const { port1, port2 } = deps.createChannel();
  child.postMessage({ type: 'countersign:port' }, [port2]);
  port1.start();
  const rpc = new PortRpc(fromEventPort(port1 as MessagePortMain), serveChannel(SHELL_CHANNELS, shell));
  const core = channelClient(CORE_CHANNELS, rpc);
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  return {
    rpc,
    child,
    onEvent: (listener) =>
      rpc.onEvent((name, payload) => {
        if (!isEventName(name)) return;
        const parsed = EVENTS[name].safeParse(payload);
        if (parsed.success) listener(name, parsed.data as never);
      }),
    async stop(timeoutMs = 10_000) {
      if (exited) return;
      const timer = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref());
      await Promise.race([core.call('core.drain', {}).catch(() => undefined), timer]);
      rpc.close();
      child.kill();
      await Promise.race([exit, timer]);
    },
  };
}
