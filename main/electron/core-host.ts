/**
 * Starts the privileged core in its own Electron utility process and talks to it over a MessagePort.
 * The shell holds no token or credential: it forwards the UI's contract calls, and answers the core's
 * requests for what only the shell can do (a native dialog, the system browser).
 */
import type { MessageChannelMain, MessagePortMain, UtilityProcess } from 'electron';
import { PortRpc, type PortLike } from '../../common/port-rpc.ts';
import { utilityProcessExecArgv } from '../core/v8-flags.ts';

export interface CoreHostDeps {
  fork: (modulePath: string, args: string[], options: { serviceName: string; stdio: 'inherit' | 'pipe'; execArgv: string[] }) => UtilityProcess;
  createChannel: () => Pick<MessageChannelMain, 'port1' | 'port2'>;
}

/** Requests the core may make of the shell. */
export type ShellHandlers = Record<string, (params: unknown, signal: AbortSignal) => Promise<unknown>>;

export interface CoreHost {
  rpc: PortRpc;
  child: UtilityProcess;
  /** Asks the core to drain in-flight calls (revoking what they hold), then ends the process. */
  stop(timeoutMs?: number): Promise<void>;
}

export function portLike(port: MessagePortMain): PortLike {
  return {
    postMessage: (message) => port.postMessage(message),
    onMessage: (listener) => {
      const l = (event: { data: unknown }) => listener(event.data);
      port.on('message', l);
      return () => port.off('message', l);
    },
  };
}

export function startCoreProcess(deps: CoreHostDeps, entry: string, args: string[], shell: ShellHandlers): CoreHost {
  const child = deps.fork(entry, args, { serviceName: 'Countersign core', stdio: 'inherit', execArgv: utilityProcessExecArgv() });
  const { port1, port2 } = deps.createChannel();
  child.postMessage({ type: 'countersign:port' }, [port2]);
  port1.start();
  const rpc = new PortRpc(portLike(port1), shell);
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  return {
    rpc,
    child,
    async stop(timeoutMs = 10_000) {
      if (exited) return;
      const timer = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref());
      await Promise.race([rpc.call('core.drain', {}).catch(() => undefined), timer]);
      rpc.close();
      child.kill();
      await Promise.race([exit, timer]);
    },
  };
}
