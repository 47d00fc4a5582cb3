/**
 * Writes each call's record, in order: a record the audit store could not take (a full disk) is held and
 * written before the next one, so each call still gets exactly one record once there is room; a record
 * the redaction policy refuses, or one the store cannot take as it is (INPUT_INVALID: it does not
 * validate or serialise), is replaced by a stand-in, so it never holds up the records behind it. A core
 * that dies first leaves the held calls in the journal, closed as aborted on the next start.
 */
import { AppError } from '../../../common/errors.ts';
import type { AuditRecordInput } from '../../../common/audit-record.ts';
import type { AuditSink } from '../ports.ts';
import type { CallTrace } from './call-trace.ts';

const UNWRITTEN_MAX = 10_000;

export interface RecordWriter {
  /**
   * `audited`: the record (or its stand-in) is in the store. `refused`: why the call's own record was
   * not taken (the redaction policy's refusal, or INPUT_INVALID), recorded instead without anything
   * that could carry a secret or the fault.
   */
  write(record: AuditRecordInput, trace: CallTrace, requestId: string): Promise<{ audited: boolean; refused?: AppError }>;
}

export function createRecordWriter(audit: AuditSink, log: (line: string) => void): RecordWriter {
  const unwritten: Array<{ record: AuditRecordInput; trace: CallTrace }> = [];

  /**
   * Appends a call's record and closes its journal entry. A record the policy refuses for carrying a
   * secret (`redaction.onSecret: 'refuse'`), or one that does not validate or serialise, can never be
   * written: the call is recorded instead without anything that could carry one, and the refusal
   * returned. Should even that be refused, the journal keeps the call, closed as aborted on the next start.
   */
  async function appendOrRefusal(record: AuditRecordInput, trace: CallTrace): Promise<AppError | undefined> {
    try {
      await audit.append(record, { knownSecrets: trace.secrets });
    } catch (error) {
      if (!AppError.is(error, 'AUDIT_REDACTION_REFUSED') && !AppError.is(error, 'INPUT_INVALID')) throw error;
      try {
        await audit.append(standInRecord(record, error), { knownSecrets: trace.secrets });
      } catch (e) {
        log(`broker: a call's record and its stand-in were both refused (${AppError.from(e).code}); the journal keeps the call`);
        return error;
      }
      trace.journalSoon((j) => j.end(trace.id));
      return error;
    }
    // Closed in the next turn, once the answer is on its way: should the core die first, the next
    // start finds the call's record and closes the entry without another (aborted-calls.ts).
    trace.journalSoon((j) => j.end(trace.id));
    return undefined;
  }

  return {
    async write(record, trace, requestId) {
      try {
        while (unwritten.length > 0) {
          const held = unwritten[0]!;
          await appendOrRefusal(held.record, held.trace);
          unwritten.shift();
        }
        const refused = await appendOrRefusal(record, trace);
        return refused ? { audited: true, refused } : { audited: true };
      } catch (e) {
        if (!unwritten.some((u) => u.trace === trace)) unwritten.push({ record, trace });
        if (unwritten.length > UNWRITTEN_MAX) log(`broker: ${unwritten.length - UNWRITTEN_MAX} unwritten record(s) dropped; their calls stay in the journal`);
        unwritten.splice(0, Math.max(0, unwritten.length - UNWRITTEN_MAX));
        log(
          `broker: audit append failed for request ${requestId} (${AppError.from(e, 'AUDIT_FAILED').code}); ${unwritten.length} record(s) held until the store takes them`,
        );
        return { audited: false };
      }
    },
  };
}

/**
 * The record of a call whose own record was refused (by the redaction policy, or as malformed): who,
 * what tool, where, each hop's outcome and the join keys, but no arguments, hop details or other free
 * text that could carry the secret or the fault.
 */
function standInRecord(r: AuditRecordInput, why: AppError): AuditRecordInput {
  const redaction = why.code === 'AUDIT_REDACTION_REFUSED';
  return {
    kind: r.kind,
    outcome: 'error',
    user: r.user,
    // The process as the OS names it; the client's self-description is free text.
    ...(r.client?.pid !== undefined ? { client: { pid: r.client.pid, ...(r.client.uid !== undefined ? { uid: r.client.uid } : {}) } } : {}),
    tool: r.tool,
    ...(r.tier ? { tier: r.tier } : {}),
    ...(r.target ? { target: r.target } : {}),
    ...(r.authorization_details ? { authorization_details: r.authorization_details } : {}),
    hops: (r.hops ?? []).map(({ detail: _, ...h }) => h),
    keys: r.keys,
    error: redaction
      ? { code: 'AUDIT_REDACTION_REFUSED', message: 'The record of this call carried something that looks like a secret and the audit policy refuses such records.' }
      : { code: 'AUDIT_FAILED', message: 'The record of this call could not be stored as it was (it did not validate or could not be serialised); it is kept without its arguments and details.' },
    delegation: r.delegation,
    summary: redaction
      ? `${r.tool ?? 'call'} → record refused: it carried something that looks like a secret`
      : `${r.tool ?? 'call'} → recorded without its arguments and details: its record could not be stored as it was`,
    ...(r.demo ? { demo: true } : {}),
    ...(r.duration_ms !== undefined ? { duration_ms: r.duration_ms } : {}),
  };
}

