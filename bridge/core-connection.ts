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

// Built-ins through process.getBuiltinModule, not static imports: see relay.ts.
const { readFileSync } = process.getBuiltinModule('node:fs');
const { connect } = process.getBuiltinModule('node:net');

/**
 * HMAC-SHA256 from node:crypto, loaded when first needed: connectOnce asks for it once the hello is
 * written, so the ~1 ms it takes to load (Node 20–24, measured in docs/benchmarks.md) overlaps the
 * core's work on the hello instead of the bridge's start.
 */
let hmacImpl: Hmac | undefined;
function hmac(keyHex: string, data: string): string {
  if (!hmacImpl) {
    const { createHmac } = process.getBuiltinModule('node:crypto');
    hmacImpl = (k, d) => createHmac('sha256', Buffer.from(k, 'hex')).update(d).digest('hex');
  }
  return hmacImpl(keyHex, data);
}

/** Why a connection failed; `absent`: nothing listens on the socket (the app may be started). */
export class ConnectError extends Error {
  readonly absent: boolean;
  constructor(message: string, absent: boolean) {
    super(message);
    this.absent = absent;
  }
}

/** Connects and runs the bridge's half of the handshake. */
export function connectOnce(options: {
  socketPath: string;
  secretPath: string;
  mark?: (step: string) => void;
}): Promise<{ socket: Socket; leftover: Uint8Array[] }> {
  return new Promise((resolve, reject) => {
    const s = connect(options.socketPath);
    let step: 'challenge' | 'welcome' = 'challenge';
    let secret = '';
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
          s.write(encodeLine({ t: 'countersign/proof', proof: clientProof(hmac, secret, clientNonce, challenge.nonce) }));
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
      } catch {
        fail(new ConnectError('could not read the core secret', false));
      }
      // While the core answers the hello: node:crypto is ready when the challenge comes.
      hmac('00', '');
    });
  });
}
