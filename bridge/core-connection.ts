/**
 * The bridge's side of the connection to the core: connect to the local socket and pass the mutual
 * handshake of common/handshake.ts, the core proving itself first. Nothing is sent to a process that
 * cannot prove it knows the per-start secret.
 */
import type { Socket } from 'node:net';
import {
  HANDSHAKE_TIMEOUT_MS,
  HANDSHAKE_VERSION,
  LineSplitter,
  MAX_HANDSHAKE_LINE,
  clientProof,
  constantTimeEqual,
  encodeLine,
  parseChallenge,
  parseWelcome,
  serverProof,
  type Hmac,
} from '../common/handshake.ts';
import { randomHex } from '../common/node/random.ts';
import { hmacSha256Hex } from './hmac-sha256.ts';

// Built-ins through process.getBuiltinModule, not static imports: see relay.ts.
const { readFileSync } = process.getBuiltinModule('node:fs');
const { connect } = process.getBuiltinModule('node:net');

/** Why a connection failed; `absent`: nothing listens on the socket (the app may be started). */
export class ConnectError extends Error {
  readonly absent: boolean;
  constructor(message: string, absent: boolean) {
    super(message);
    this.absent = absent;
  }
}

/**
 * Connects and runs the bridge's half of the handshake. `behindProof` gives bytes to send in the same
 * write as the proof, once the core has proved itself: the first client lines reach the core a round
 * trip earlier than after its welcome. The core reads them only if the proof passes; if the handshake
 * fails after all, they went to the core and nowhere else, and the caller still holds them.
 */
export function connectOnce(options: {
  socketPath: string;
  secretPath: string;
  mark?: (step: string) => void;
  behindProof?: () => string;
}): Promise<{ socket: Socket; leftover: Uint8Array[] }> {
  return new Promise((resolve, reject) => {
    const s = connect(options.socketPath);
    let step: 'challenge' | 'welcome' = 'challenge';
    let secret = '';
    let keyed: ((data: string) => string) | undefined;
    // the proofs are computed under the secret keyed once on connect; any other key is keyed afresh
    const hmac: Hmac = (keyHex, data) => (keyed && keyHex === secret ? keyed : hmacSha256Hex(keyHex))(data);
    const clientNonce = randomHex(32);
    let settled = false;
    const fail = (error: ConnectError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      reject(error);
    };
    const timer = setTimeout(() => fail(new ConnectError('the core did not finish the handshake in time', false)), HANDSHAKE_TIMEOUT_MS);
    const splitter = new LineSplitter({
      maxLineBytes: MAX_HANDSHAKE_LINE,
      onOversize: () => fail(new ConnectError('the process on the socket sent an oversized handshake line', false)),
      onLine: (line) => {
        if (settled) return;
        if (step === 'challenge') {
          options.mark?.('challenge');
          const challenge = parseChallenge(line);
          if (!challenge) return fail(new ConnectError('the process on the socket did not answer the handshake', false));
          if (challenge.t === 'countersign/refused') return fail(new ConnectError(`the core refused the handshake (${challenge.code})`, false));
          if (!constantTimeEqual(challenge.proof, serverProof(hmac, secret, clientNonce, challenge.nonce))) {
            return fail(new ConnectError('the process listening on the socket could not prove it is Countersign; nothing was sent to it', false));
          }
          step = 'welcome';
          s.write(encodeLine({ t: 'countersign/proof', proof: clientProof(hmac, secret, clientNonce, challenge.nonce) }) + (options.behindProof?.() ?? ''));
          return;
        }
        const welcome = parseWelcome(line);
        if (!welcome || welcome.t === 'countersign/refused') {
          return fail(new ConnectError(`the core refused the handshake (${welcome?.t === 'countersign/refused' ? welcome.code : 'unreadable'})`, false));
        }
        options.mark?.('welcome');
        settled = true;
        clearTimeout(timer);
        splitter.pause();
        s.off('data', onData);
        s.off('close', onClose);
        s.off('error', onError);
        resolve({ socket: s, leftover: splitter.takeRest() });
      },
    });
    const onData = (chunk: Buffer): void => splitter.push(chunk);
    const onClose = (): void => fail(new ConnectError('the core closed the connection during the handshake', false));
    const onError = (error: NodeJS.ErrnoException): void =>
      fail(new ConnectError('could not connect to the core', error.code === 'ENOENT' || error.code === 'ECONNREFUSED'));
    s.on('error', onError);
    s.on('close', onClose);
    s.on('data', onData);
    // The hello holds only a fresh nonce, so it is queued at once rather than after the connect event.
    s.write(encodeLine({ t: 'countersign/hello', v: HANDSHAKE_VERSION, nonce: clientNonce }));
    options.mark?.('connecting');
    s.once('connect', () => {
      options.mark?.('connected');
      try {
        secret = readFileSync(options.secretPath, 'utf8').trim();
        // while the core works on the hello
        keyed = hmacSha256Hex(secret);
      } catch {
        fail(new ConnectError('could not read the core secret', false));
      }
    });
  });
}
