/**
 * The command line's side of a control connection to the running core (common/handshake.ts): the
 * same mutual handshake as a bridge, with `purpose: "control"`, then one request. `countersign open`
 * uses it to get a fresh launch link (headless) or bring the window to the front (desktop), so a
 * closed or reloaded page is never a dead end.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { AppError } from '../../../common/errors.ts';
import {
  HANDSHAKE_TIMEOUT_MS,
  HANDSHAKE_VERSION,
  LineSplitter,
  clientProof,
  constantTimeEqual,
  encodeLine,
  parseChallenge,
  parseWelcome,
  serverProof,
} from '../../../common/handshake.ts';
import type { CountersignPaths } from '../../../common/paths.ts';
import { hmacSha256 } from './socket-server.ts';

/** Sends one control request to the core and returns its result; NOT_RUNNING when no core answers. */
export async function controlRequest(paths: Pick<CountersignPaths, 'socketPath' | 'secretPath'>, method: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const socket = connect(paths.socketPath);
    const nonce = randomBytes(32).toString('hex');
    let step: 'challenge' | 'welcome' | 'answer' = 'challenge';
    let settled = false;
    const done = (error: AppError | undefined, value?: Record<string, unknown>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (error) reject(error);
      else resolve(value ?? {});
    };
    const timer = setTimeout(() => done(new AppError('TIMEOUT', 'The running Countersign did not answer in time.')), HANDSHAKE_TIMEOUT_MS * 2);
    const splitter = new LineSplitter({
      maxLineBytes: 64 * 1024,
      onOversize: () => done(new AppError('HANDSHAKE_FAILED', 'The process on the socket sent an oversized line.')),
      onLine: (line) => {
        if (step === 'challenge') {
          void readFile(paths.secretPath, 'utf8').then(
            (text) => {
              const secret = text.trim();
              const challenge = parseChallenge(line);
              if (!challenge || challenge.t === 'countersign/refused') return done(new AppError('HANDSHAKE_FAILED', 'The running Countersign refused the connection.'));
              if (!constantTimeEqual(challenge.proof, serverProof(hmacSha256, secret, nonce, challenge.nonce))) {
                return done(new AppError('HANDSHAKE_FAILED', 'The process listening on the socket could not prove it is Countersign; nothing was sent to it.'));
              }
              step = 'welcome';
              socket.write(encodeLine({ t: 'countersign/proof', proof: clientProof(hmacSha256, secret, nonce, challenge.nonce) }));
            },
            () => done(new AppError('HANDSHAKE_FAILED', 'Countersign’s secret could not be read.')),
          );
          return;
        }
        if (step === 'welcome') {
          const welcome = parseWelcome(line);
          if (!welcome || welcome.t === 'countersign/refused') return done(new AppError('HANDSHAKE_FAILED', 'The running Countersign refused the connection.'));
          step = 'answer';
          socket.write(encodeLine({ id: 1, method }));
          return;
        }
        let reply: { result?: unknown; error?: { code?: unknown; message?: unknown } };
        try {
          reply = JSON.parse(line) as typeof reply;
        } catch {
          return done(new AppError('HANDSHAKE_FAILED', 'The running Countersign sent an unreadable answer.'));
        }
        if (reply.error) {
          const message = typeof reply.error.message === 'string' ? reply.error.message.slice(0, 500) : 'The running Countersign refused the request.';
          return done(new AppError('INTERNAL', message));
        }
        done(undefined, typeof reply.result === 'object' && reply.result !== null ? (reply.result as Record<string, unknown>) : {});
      },
    });
    socket.on('data', (chunk: Buffer) => splitter.push(chunk));
    socket.on('error', (error: NodeJS.ErrnoException) =>
      done(
        error.code === 'ENOENT' || error.code === 'ECONNREFUSED'
          ? new AppError('APP_NOT_RUNNING', 'Countersign is not running. Start it with `countersign start`.')
          : new AppError('HANDSHAKE_FAILED', 'Countersign’s socket could not be reached.'),
      ),
    );
    socket.on('close', () => done(new AppError('HANDSHAKE_FAILED', 'The running Countersign closed the connection.')));
    socket.write(encodeLine({ t: 'countersign/hello', v: HANDSHAKE_VERSION, nonce, purpose: 'control' }));
  });
}
