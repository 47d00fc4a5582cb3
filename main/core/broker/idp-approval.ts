/**
 * Approvals the identity provider carries (`approvals.tier3: idp-when-offered`): nobody was asked
 * locally, the person answered the IdP's push during the exchange, so the OBO itself must prove it.
 */
import { AppError } from '../../../common/errors.ts';
import type { Hop } from '../../../common/audit-record.ts';
import { canonicalJson } from '../../../common/canonical-json.ts';
import type { CallPlan } from '../connectors/types.ts';
import { authorizationDetailsDigest, type Obo } from '../idp/token-exchange.ts';
import { refusal } from '../approvals/decision.ts';
import { hopOutcome } from './call-trace.ts';

/**
 * The exchange of a call whose approval the IdP carries: the person's answer on the push is the
 * approval, so a refusal or silence there is the person's denial or time-out, said as such.
 */
export async function approvedThroughIdp(exchanged: Promise<Obo>, plan: CallPlan, hop: Hop): Promise<Obo> {
  try {
    return await exchanged;
  } catch (error) {
    const e = AppError.from(error);
    if (e.code === 'IDP_STEP_UP_DENIED') {
      Object.assign(hop, {
        outcome: 'denied',
        code: 'APPROVAL_DENIED',
        detail: 'via=idp-push denied on the push',
      });
      throw new AppError('APPROVAL_DENIED', refusal.pushDenied(plan), { cause: e });
    }
    if (e.code === 'IDP_STEP_UP_TIMEOUT') {
      Object.assign(hop, {
        outcome: 'timeout',
        code: 'APPROVAL_TIMEOUT',
        detail: 'via=idp-push not answered',
      });
      throw new AppError('APPROVAL_TIMEOUT', refusal.pushTimedOut(plan), { cause: e });
    }
    Object.assign(hop, { outcome: hopOutcome(e), code: e.code, detail: 'via=idp-push not completed' });
    throw e;
  }
}

/**
 * Fail closed: no local prompt was shown, so the OBO must prove a person approved this very call
 * through the IdP: obtained through the push (the Verify-style second leg), the IdP's signed `amr`
 * naming the push, and the granted RAR exactly the one whose digest the push carried. Anything less is
 * refused before Vault is asked for a credential.
 */
export function requireIdpApproval(
  obo: Obo,
  plan: CallPlan,
  asked: CallPlan['authorizationDetails'],
  hop: Hop,
): void {
  const digest = authorizationDetailsDigest(asked);
  const pushed = obo.steppedUp && (obo.amr ?? []).includes('push');
  const sameCall = canonicalJson(obo.authorizationDetails) === canonicalJson(asked);
  if (pushed && sameCall) {
    Object.assign(hop, {
      outcome: 'ok',
      detail: `via=idp-push amr=${(obo.amr ?? []).join(',')} push_digest=${digest}`,
    });
    return;
  }
  const missing = !pushed
    ? 'without a push approval'
    : 'for authorization details other than the ones the push approved';
  Object.assign(hop, {
    outcome: 'denied',
    code: 'APPROVAL_NOT_PROVEN',
    detail: `via=idp-push refused: the OBO was issued ${missing} (jti=${obo.jti})`,
  });
  throw new AppError('APPROVAL_NOT_PROVEN', refusal.pushNotProven(plan, missing));
}
