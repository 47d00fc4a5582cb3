/**
 * The UI's only way in: one `ipcMain.handle` per contract channel available on the desktop. Each
 * handler checks that the sender is the app's own top frame, then forwards the call to the core through
 * `serveChannel`, which validates the request and parses the response so an unnamed field never
 * reaches the renderer. Results travel in an envelope so errors keep their code.
 */
import type { IpcMain, IpcMainInvokeEvent } from 'electron';
import { serveChannel } from '../../common/channel.ts';
import { CHANNELS, channelsFor, type Channel, type ContractHandlers } from '../../common/contract.ts';
import { AppError, type WireError } from '../../common/errors.ts';
import { isTrustedSender } from './hardening.ts';

export type IpcEnvelope = { ok: true; value: unknown } | { ok: false; error: WireError };

export const EVENT_CHANNEL = 'countersign:event';

export interface CoreCaller {
  call(method: string, params: unknown): Promise<unknown>;
}

export async function handleInvoke(core: CoreCaller, channel: Channel, event: Pick<IpcMainInvokeEvent, 'senderFrame'>, raw: unknown): Promise<IpcEnvelope> {
  try {
    if (!isTrustedSender(event.senderFrame)) {
      throw new AppError('INPUT_INVALID', 'Refused: the request did not come from the Countersign window.');
    }
    const forward = serveChannel(CHANNELS, { [channel]: (request: unknown) => core.call(channel, request) } as Pick<ContractHandlers, Channel>);
    return { ok: true, value: await forward[channel](raw) };
  } catch (error) {
    return { ok: false, error: AppError.from(error).toWire() };
  }
}

export function registerIpcHandlers(ipcMain: Pick<IpcMain, 'handle'>, core: CoreCaller): Channel[] {
  const channels = channelsFor('electron');
  for (const channel of channels) {
    ipcMain.handle(channel, (event, raw: unknown) => handleInvoke(core, channel, event, raw));
  }
  return channels;
}
