/** The small field schemas every part of the contract uses. */
import { z } from 'zod';

export const Empty = z.object({}).strict();
export const Ok = z.object({ ok: z.literal(true) });
export const Id = z.string().min(1).max(200);
export const IsoTime = z.string().max(40);
