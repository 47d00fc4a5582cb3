/**
 * Which sessions see an old catalogue. Claude Desktop calls only the tools of a session's first
 * `tools/list`: it answers `notifications/tools/list_changed` with another listing and then discards
 * it (docs/claude-desktop.md). So when the tools Countersign offers change, a session that started
 * with the old ones keeps them until Claude Desktop is restarted, and the person has to be told.
 *
 * Each session's first listing is remembered (as a digest); the catalogue is whatever was listed last,
 * to a session or by the core itself after a change. A session is stale while its first listing is not
 * the catalogue. `list_changed` is still sent to every session, for clients that honour it.
 */
import { createHash } from 'node:crypto';
import type { Tool } from '@modelcontextprotocol/sdk/types.js';

function digest(tools: readonly Tool[]): string {
  return createHash('sha256').update(JSON.stringify(tools)).digest('hex');
}

export class CatalogueWatch {
  #current: string | undefined;
  #count = 0;
  readonly #first = new Map<string, string>();
  readonly #listeners = new Set<(stale: number) => void>();
  #stale = 0;

  /** A listing handed out to `sessionId`. */
  listed(sessionId: string, tools: readonly Tool[]): void {
    const d = digest(tools);
    if (!this.#first.has(sessionId)) this.#first.set(sessionId, d);
    this.#set(d, tools.length);
  }

  /** The catalogue as the core now lists it (after a connector announced a change). */
  observed(tools: readonly Tool[]): void {
    this.#set(digest(tools), tools.length);
  }

  closed(sessionId: string): void {
    if (this.#first.delete(sessionId)) this.#update();
  }

  /** Sessions whose tools are not the current catalogue. */
  stale(): number {
    return this.#stale;
  }

  /** Tools in the current catalogue. */
  size(): number {
    return this.#count;
  }

  /** Called whenever the number of stale sessions changes. */
  onChange(listener: (stale: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  #set(d: string, count: number): void {
    this.#current = d;
    this.#count = count;
    this.#update();
  }

  #update(): void {
    let stale = 0;
    for (const first of this.#first.values()) if (first !== this.#current) stale += 1;
    if (stale === this.#stale) return;
    this.#stale = stale;
    for (const l of this.#listeners) l(stale);
  }
}
