import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * Verify-style push step-up (STANDARDS.md §3, the IBM Verify pattern): a token exchange that needs a
 * person's approval answers with a challenge token; with it the client lists the user's factors,
 * starts a `verification` whose transaction data carries the call's digest, and polls it until the
 * lab "phone" approves or denies. An approval yields a signed assertion for the jwt-bearer second leg.
 */

export interface Challenge {
  id: string;
  token: string;
  sub: string;
  username: string;
  clientId: string;
  digest: string;
  /** Digests the call itself names (statement_digest / argument_digest); transaction data may carry these instead. */
  callDigests: string[];
  audience: string;
  vaultRole: string;
  acr?: string;
  authTime?: number;
  jkt?: string;
  expiresAt: number;
  used: boolean;
}

export type VerificationState = 'PENDING' | 'VERIFY_SUCCESS' | 'USER_DENIED' | 'EXPIRED';

export interface Verification {
  id: string;
  challengeId: string;
  authenticatorId: string;
  message: string;
  transactionData: unknown;
  state: VerificationState;
  createdAt: number;
  expiresAt: number;
}

const CHALLENGE_TTL_S = 300;

export function factorIds(sub: string): { factorId: string; authenticatorId: string } {
  return { factorId: `factor-${sub}`, authenticatorId: `authenticator-${sub}` };
}

export class PushStore {
  readonly challenges = new Map<string, Challenge>();
  readonly verifications = new Map<string, Verification>();
  readonly #byToken = new Map<string, string>();
  readonly #usedAssertions = new Set<string>();

  createChallenge(c: Omit<Challenge, 'id' | 'token' | 'expiresAt' | 'used'>): Challenge {
    const challenge: Challenge = {
      ...c,
      id: randomUUID(),
      token: randomBytes(32).toString('base64url'),
      expiresAt: Date.now() + CHALLENGE_TTL_S * 1000,
      used: false,
    };
    this.challenges.set(challenge.id, challenge);
    this.#byToken.set(challenge.token, challenge.id);
    return challenge;
  }

  challengeByBearer(req: IncomingMessage): Challenge | undefined {
    const m = /^Bearer\s+(\S+)$/i.exec(req.headers.authorization ?? '');
    const id = m ? this.#byToken.get(m[1]!) : undefined;
    const c = id ? this.challenges.get(id) : undefined;
    return c && !c.used && c.expiresAt > Date.now() ? c : undefined;
  }

  stateOf(v: Verification): VerificationState {
    if (v.state === 'PENDING' && v.expiresAt <= Date.now()) v.state = 'EXPIRED';
    return v.state;
  }

  pending(): { id: string; transactionData: unknown; user: string; message: string; digest: string }[] {
    return [...this.verifications.values()]
      .filter((v) => this.stateOf(v) === 'PENDING')
      .map((v) => {
        const c = this.challenges.get(v.challengeId)!;
        return { id: v.id, transactionData: v.transactionData, user: c.username, message: v.message, digest: c.digest };
      });
  }

  decide(id: string, state: 'VERIFY_SUCCESS' | 'USER_DENIED'): void {
    const v = this.verifications.get(id);
    if (!v || this.stateOf(v) !== 'PENDING') throw new Error(`no pending push ${id}`);
    v.state = state;
  }

  /** Marks a step-up assertion used; false when it was already presented once. */
  useAssertion(jti: string): boolean {
    if (this.#usedAssertions.has(jti)) return false;
    this.#usedAssertions.add(jti);
    return true;
  }
}

function json(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify(body));
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('body too large');
    chunks.push(chunk);
  }
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/**
 * Serves `/v2.0/factors`, `/v1.0/authenticators/{id}/verifications` and the transaction poll.
 * Returns false when the request is not one of these paths.
 */
export async function handleVerifyApi(
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  deps: { store: PushStore; issuer: string; signAssertion: (c: Challenge, v: Verification) => Promise<string>; log: (line: string) => void },
): Promise<boolean> {
  const { store, issuer } = deps;
  const isFactors = url.pathname === '/v2.0/factors';
  const start = /^\/v1\.0\/authenticators\/([^/]+)\/verifications$/.exec(url.pathname);
  const poll = /^\/v1\.0\/authenticators\/([^/]+)\/verifications\/([^/]+)$/.exec(url.pathname);
  if (!isFactors && !start && !poll) return false;

  const challenge = store.challengeByBearer(req);
  if (!challenge) {
    res.setHeader('www-authenticate', 'Bearer error="invalid_token"');
    json(res, 401, { messageId: 'CSIAH0301E', messageDescription: 'The challenge token is missing, expired or already used.' });
    return true;
  }
  const { factorId, authenticatorId } = factorIds(challenge.sub);

  if (isFactors && req.method === 'GET') {
    json(res, 200, {
      total: 1,
      factors: [
        {
          id: factorId,
          type: 'signature',
          subType: 'userPresence',
          enabled: true,
          validated: true,
          userId: challenge.sub,
          created: new Date(0).toISOString(),
          references: { authenticatorId },
          attributes: { deviceName: 'Countersign lab phone', algorithm: 'SHA256withECDSA', additionalData: [] },
        },
      ],
    });
    return true;
  }

  if (start && req.method === 'POST') {
    if (start[1] !== authenticatorId) {
      json(res, 404, { messageId: 'CSIAH0404E', messageDescription: 'No such authenticator for this user.' });
      return true;
    }
    let body: { transactionData?: unknown; expiresIn?: unknown; authenticationMethods?: unknown };
    try {
      body = (await readJson(req)) as typeof body;
    } catch {
      json(res, 400, { messageId: 'CSIAH0400E', messageDescription: 'The request body is not JSON.' });
      return true;
    }
    const methods = Array.isArray(body.authenticationMethods) ? (body.authenticationMethods as { id?: unknown }[]) : [];
    if (!methods.some((m) => m.id === factorId)) {
      json(res, 400, { messageId: 'CSIAH0400E', messageDescription: 'authenticationMethods must name the userPresence factor.' });
      return true;
    }
    const data = JSON.stringify(body.transactionData ?? null);
    const carriesDigest =
      data.includes(challenge.digest) || (challenge.callDigests.length > 0 && challenge.callDigests.every((d) => data.includes(d)));
    if (!carriesDigest) {
      json(res, 400, {
        messageId: 'CSIAH0400E',
        messageDescription: 'transactionData must carry the digest of the call being approved.',
      });
      return true;
    }
    const message =
      typeof body.transactionData === 'object' && body.transactionData !== null && typeof (body.transactionData as { message?: unknown }).message === 'string'
        ? ((body.transactionData as { message: string }).message as string)
        : 'Approve a call';
    const expiresIn = typeof body.expiresIn === 'number' && body.expiresIn > 0 ? Math.min(body.expiresIn, 300) : 120;
    const v: Verification = {
      id: randomUUID(),
      challengeId: challenge.id,
      authenticatorId,
      message: message.slice(0, 500),
      transactionData: body.transactionData,
      state: 'PENDING',
      createdAt: Date.now(),
      expiresAt: Date.now() + expiresIn * 1000,
    };
    store.verifications.set(v.id, v);
    deps.log(`idp: push started id=${v.id} sub=${challenge.sub} digest=${challenge.digest}`);
    json(res, 202, {
      id: v.id,
      state: 'PENDING',
      authenticatorId,
      expiry: new Date(v.expiresAt).toISOString(),
      transactionUri: `${issuer}/v1.0/authenticators/${authenticatorId}/verifications/${v.id}`,
    });
    return true;
  }

  if (poll && req.method === 'GET') {
    const v = store.verifications.get(poll[2]!);
    if (!v || v.challengeId !== challenge.id || poll[1] !== authenticatorId) {
      json(res, 404, { messageId: 'CSIAH0404E', messageDescription: 'No such verification.' });
      return true;
    }
    const state = store.stateOf(v);
    const body: Record<string, unknown> = { id: v.id, state, authenticatorId, expiry: new Date(v.expiresAt).toISOString() };
    if (state === 'VERIFY_SUCCESS' && url.searchParams.get('returnJwt') === 'true') {
      body.assertion = await deps.signAssertion(challenge, v);
    }
    json(res, 200, body);
    return true;
  }

  json(res, 405, { messageId: 'CSIAH0405E', messageDescription: 'Method not allowed.' });
  return true;
}
