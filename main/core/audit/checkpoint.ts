import type { KeyObject } from 'node:crypto';
import { CompactSign, compactVerify, importJWK } from 'jose';
import type { JWK } from 'jose';
import { AppError } from '../../../common/errors.ts';

/**
 * A checkpoint is the chain head `(seq, hash)` signed with the install's Ed25519 key as a compact JWS
 * (RFC 7515, `alg: EdDSA`). Kept locally it catches an edit by anyone without the keychain; sent off
 * the machine (the anchor) it also catches a fully re-hashed chain or a truncated tail, which nothing
 * kept on the machine can.
 */
const CHECKPOINT_TYP = 'countersign-audit-checkpoint+jws';

export interface Checkpoint {
  seq: number;
  hash: string;
  /** When it was signed, epoch milliseconds. */
  at_ms: number;
}

export interface SignedCheckpoint extends Checkpoint {
  jws: string;
}

export async function signCheckpoint(cp: Checkpoint, privateKey: KeyObject, kid: string): Promise<SignedCheckpoint> {
  const payload = new TextEncoder().encode(JSON.stringify({ seq: cp.seq, hash: cp.hash, at_ms: cp.at_ms }));
  const jws = await new CompactSign(payload).setProtectedHeader({ alg: 'EdDSA', typ: CHECKPOINT_TYP, kid }).sign(privateKey);
  return { ...cp, jws };
}

/** Verifies a checkpoint's signature and returns what it attests. Throws AUDIT_TAMPERED when it does not verify. */
export async function verifyCheckpoint(jws: string, publicKey: KeyObject | JWK): Promise<Checkpoint> {
  try {
    const key = 'kty' in publicKey ? await importJWK(publicKey as JWK, 'EdDSA') : publicKey;
    const { payload, protectedHeader } = await compactVerify(jws, key, { algorithms: ['EdDSA', 'Ed25519'] });
    if (protectedHeader.typ !== CHECKPOINT_TYP) throw new Error('typ');
    const body = JSON.parse(new TextDecoder().decode(payload)) as Partial<Checkpoint>;
    if (!Number.isSafeInteger(body.seq) || typeof body.hash !== 'string' || typeof body.at_ms !== 'number') throw new Error('shape');
    return { seq: body.seq!, hash: body.hash, at_ms: body.at_ms };
  } catch (e) {
    throw AppError.from(e, 'AUDIT_TAMPERED', 'A checkpoint does not carry a valid signature of this install.');
  }
}

/**
 * POSTs a checkpoint to the anchor receiver as `application/jose`. Any 2xx is success; the receiver is
 * expected to keep what it receives where this machine cannot rewrite it.
 */
export async function postAnchor(url: string, cp: SignedCheckpoint, fetchImpl: typeof fetch = fetch, timeoutMs = 5000): Promise<void> {
  let res: Response;
  try {
    res = await fetchImpl(url, {
      method: 'POST',
      headers: { 'content-type': 'application/jose', accept: 'application/json' },
      body: cp.jws,
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (e) {
    throw AppError.from(e, 'AUDIT_ANCHOR_FAILED', 'The audit anchor receiver could not be reached.');
  }
  await res.body?.cancel();
  if (!res.ok) throw new AppError('AUDIT_ANCHOR_FAILED', `The audit anchor receiver refused the checkpoint (HTTP ${res.status}).`);
}
