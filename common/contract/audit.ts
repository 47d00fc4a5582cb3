/** The audit timeline's requests and answers: filters, pages, the chain's verification and exports. */
import { z } from 'zod';
import { AuditRecordSchema, OUTCOMES, RECORD_KINDS } from '../audit-record.ts';
import { IsoTime } from './fields.ts';

export const TierSchema = z.union([z.literal(1), z.literal(2), z.literal(3), z.literal(4)]);

/** Filters of the timeline. Every field narrows; none widens. */
export const AuditFilterSchema = z
  .object({
    outcome: z.array(z.enum(OUTCOMES)).max(OUTCOMES.length).optional(),
    kind: z.array(z.enum(RECORD_KINDS)).max(RECORD_KINDS.length).optional(),
    tier: z.array(TierSchema).max(4).optional(),
    tool: z.string().max(200).optional(),
    /** Matches the user's `sub`, name or email. */
    user: z.string().max(200).optional(),
    from: IsoTime.optional(),
    to: IsoTime.optional(),
    /** Free text over tool, target, summary, error and join keys. */
    search: z.string().max(500).optional(),
  })
  .strict();
export type AuditFilter = z.infer<typeof AuditFilterSchema>;

export const AuditPageRequestSchema = z
  .object({
    filter: AuditFilterSchema.default({}),
    /**
     * Only records with `seq` below this. The timeline pins it to the head it first saw so records
     * appended while a person scrolls do not shift the rows under them.
     */
    before: z.number().int().positive().optional(),
    /** Rows to skip after `before` and the filter applied, newest first (random access for a virtual list). */
    offset: z.number().int().nonnegative().max(10_000_000).default(0),
    limit: z.number().int().min(1).max(500).default(100),
    /**
     * `row`: each record as a timeline row needs it, without its arguments and authorization details,
     * which the client chose and may each take 256 KiB (a page of 100 could carry 50 MB); `audit.get`
     * gives the whole record. `all` by default.
     */
    fields: z.enum(['all', 'row']).default('all'),
  })
  .strict();
export type AuditPageRequest = z.input<typeof AuditPageRequestSchema>;

export const AuditPageSchema = z.object({
  /** Newest first. */
  records: z.array(AuditRecordSchema),
  /** Records matching the filter below `before`, for the list's length; a floor when `total_capped`. */
  total: z.number().int().nonnegative(),
  /**
   * More records may match than `total`: the core stopped counting (at its cap, or for a search past
   * the newest 10,000 records below the page's head), and the timeline says "N+".
   */
  total_capped: z.boolean(),
  /** The newest `seq` in the store when the page was read. */
  head: z.number().int().nonnegative(),
});
export type AuditPage = z.infer<typeof AuditPageSchema>;

export const VerifyResultSchema = z.object({
  ok: z.boolean(),
  checked: z.number().int().nonnegative(),
  /** The first record edited, deleted or reordered, when the chain is broken. */
  firstBad: z.object({ seq: z.number().int(), reason: z.string().max(500) }).nullable(),
  /** Whether the head was compared with a signed checkpoint kept off the machine. */
  anchored: z.boolean(),
  verifiedAt: IsoTime,
  /** The last record the walk reached: records after it were appended since. */
  head: z.object({ seq: z.number().int(), hash: z.string() }).nullable().optional(),
});
export type VerifyResult = z.infer<typeof VerifyResultSchema>;

export const ExportRequestSchema = z.object({ format: z.enum(['jsonl', 'csv']), filter: AuditFilterSchema.default({}) }).strict();
export const ExportResultSchema = z.object({ filename: z.string().max(200), mediaType: z.string().max(100), content: z.string() });
export type ExportResult = z.infer<typeof ExportResultSchema>;
/** An export written to a file the person chose in a native save dialog (the desktop app). */
export const SaveExportResultSchema = z.union([
  z.object({ saved: z.literal(false) }),
  z.object({ saved: z.literal(true), path: z.string().max(4096), records: z.number().int().nonnegative(), bytes: z.number().int().nonnegative() }),
]);
export type SaveExportResult = z.infer<typeof SaveExportResultSchema>;
