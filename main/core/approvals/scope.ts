/** What a cached tier-2 approval covers (docs/call-chain.md, "What a cached tier-2 approval covers"). */
import type { ApprovalScope } from '../connectors/types.ts';

/** `<class> <table>` for each change; an upstream tool call changes its one target with its class. */
export function changesOf(scope: ApprovalScope): string[] {
  return scope.changes ?? scope.targets.map((t) => `${scope.statementClass} ${t}`);
}

/**
 * Whether an approval given for `approved` covers a call with scope `wanted`: the same class, every
 * change and every table of the call among the approved ones (exact names), a ceiling no higher. A
 * scope naming no table or no change covers nothing and is covered by nothing.
 */
export function covers(approved: ApprovalScope, wanted: ApprovalScope): boolean {
  const had = changesOf(approved);
  const want = changesOf(wanted);
  if (approved.targets.length === 0 || had.length === 0 || wanted.targets.length === 0 || want.length === 0)
    return false;
  if (approved.statementClass !== wanted.statementClass) return false;
  if (!wanted.targets.every((t) => approved.targets.includes(t))) return false;
  if (!want.every((c) => had.includes(c))) return false;
  return (wanted.rowCeiling ?? Number.POSITIVE_INFINITY) <= (approved.rowCeiling ?? Number.POSITIVE_INFINITY);
}
