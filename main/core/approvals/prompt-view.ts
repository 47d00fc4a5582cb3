/**
 * What an approval prompt shows and what the answer binds to: the call's digest over the exact bytes,
 * the RAR, the tool and the target, and the view the shells lay out (every string made visible by
 * render.ts, built from policy and the parsed call, never from text the model wrote).
 */
import { createHash } from 'node:crypto';
import type { ApprovalView } from '../../../common/approval-view.ts';
import type { CallPlan } from '../connectors/types.ts';
import { makeVisible, renderArguments, truncate, visibleName } from './render.ts';

export function callDigest(
  plan: Pick<CallPlan, 'bytes' | 'authorizationDetails' | 'tool' | 'target'>,
): string {
  const canonical = JSON.stringify([plan.tool, plan.target, plan.bytes, plan.authorizationDetails]);
  return `sha256:${createHash('sha256').update(canonical).digest('hex')}`;
}

function describeDetail(d: CallPlan['authorizationDetails'][number]): string {
  const parts = [d.type];
  if (d.actions?.length) parts.push(d.actions.join(', '));
  const tables = Array.isArray(d.tables)
    ? (d.tables as unknown[]).map(String)
    : d.identifier
      ? [d.identifier]
      : [];
  if (tables.length) parts.push(`on ${tables.join(', ')}`);
  if (Array.isArray(d.functions) && d.functions.length)
    parts.push(`calls ${(d.functions as unknown[]).map(String).join(', ')}`);
  if (d.privileges?.length) parts.push(`privileges: ${d.privileges.join(', ')}`);
  if (d.locations?.length) parts.push(`at ${d.locations.join(', ')}`);
  // Whole: every table and action the identity provider is asked for is shown.
  return makeVisible(parts.join(' · '));
}

export function promptView(o: {
  id: string;
  plan: CallPlan;
  args: Record<string, unknown>;
  digest: string;
  requestedAt: Date;
  expiresAt: Date;
  /** How long a tier-2 yes covers later calls. */
  cacheTtlMs: number;
}): ApprovalView {
  const { plan } = o;
  const scope = plan.approvalScope;
  return {
    id: o.id,
    tier: plan.tier as 2 | 3,
    tool: visibleName(plan.tool),
    target: truncate(makeVisible(plan.target), 200),
    summary: truncate(makeVisible(`${plan.reason} (tier ${plan.tier})`), 300),
    authorization: plan.authorizationDetails.map(describeDetail),
    argumentsText: renderArguments(o.args),
    digest: o.digest,
    scope:
      plan.tier === 2 && scope
        ? `${scope.statementClass} on ${scope.targets.map(visibleName).join(', ')}` +
          `${scope.rowCeiling !== undefined ? `, at most ${scope.rowCeiling} rows` : ''}, in this Claude session for ${Math.round(o.cacheTtlMs / 60_000)} minutes`
        : undefined,
    requestedAt: o.requestedAt.toISOString(),
    expiresAt: o.expiresAt.toISOString(),
  };
}
