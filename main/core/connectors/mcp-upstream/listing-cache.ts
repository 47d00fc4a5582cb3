/**
 * Each upstream's last tool listing, kept in the data directory so the first `tools/list` of a session
 * is whole even before sign-in (an upstream's listing needs the user's token) and right after a
 * restart. Claude Desktop uses only the tools of a session's first listing, so a listing that arrives
 * later is a listing Claude never sees.
 *
 * What is kept is what the upstream published about its tools (names, titles, descriptions, input
 * schemas, annotations), nothing from the session that listed them. It is used for listing only: a
 * call is always planned against a fresh listing, so an edited file cannot lower a tool's tier or widen
 * its schema. Files are owner-only (0600 in a 0700 directory) and written whole under a private name,
 * then renamed into place, so a reader never sees half a file; one a group or others may write is ignored.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ToolSchema, type Tool } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

const FORMAT = 1;
const MAX_FILE_BYTES = 8 * 1024 * 1024;

const CachedListingSchema = z.object({
  format: z.literal(FORMAT),
  upstream: z.string(),
  url: z.string(),
  listedAt: z.string(),
  tools: z.array(ToolSchema).max(10_000),
});

export interface ListingCache {
  /** The last listing of `upstream` at `url`, or undefined (none, another URL, unreadable, unsafe). */
  read(upstream: string, url: string): Tool[] | undefined;
  write(upstream: string, url: string, tools: readonly Tool[]): Promise<void>;
}

/** Only what describes a tool: no `_meta` (the upstream's own), no output schema (not passed on). */
export function publishedPart(tool: Tool): Tool {
  const { _meta: _m, outputSchema: _o, ...rest } = tool;
  return rest;
}

export function fileListingCache(dir: string): ListingCache {
  const fileOf = (upstream: string) => join(dir, `${upstream}.json`);
  return {
    read(upstream, url) {
      try {
        const file = fileOf(upstream);
        const info = statSync(file);
        if (!info.isFile() || info.size > MAX_FILE_BYTES || (info.mode & 0o022) !== 0) return undefined;
        if (typeof process.getuid === 'function' && info.uid !== process.getuid()) return undefined;
        const parsed = CachedListingSchema.safeParse(JSON.parse(readFileSync(file, 'utf8')));
        if (!parsed.success || parsed.data.upstream !== upstream || parsed.data.url !== url) return undefined;
        return parsed.data.tools;
      } catch {
        return undefined;
      }
    },
    async write(upstream, url, tools) {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      if (process.platform !== 'win32') chmodSync(dir, 0o700);
      const file = fileOf(upstream);
      const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
      const body = { format: FORMAT, upstream, url, listedAt: new Date().toISOString(), tools: tools.map(publishedPart) };
      try {
        await writeFile(tmp, JSON.stringify(body), { mode: 0o600, flag: 'wx' });
        await rename(tmp, file);
      } catch (error) {
        await rm(tmp, { force: true });
        throw error;
      }
    },
  };
}
