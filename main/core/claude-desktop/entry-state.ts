/** Whether Claude Desktop's configuration holds Countersign's entry, as the status and settings show it. */
import { readFile } from 'node:fs/promises';
import { SERVER_NAME } from './config.ts';

export class ClaudeDesktopEntryState {
  readonly path: string;
  #configured = false;

  constructor(path: string) {
    this.path = path;
  }

  get configured(): boolean {
    return this.#configured;
  }

  /** Reads the file again; one that is missing or not JSON counts as not configured. */
  async refresh(): Promise<void> {
    try {
      const text = await readFile(this.path, 'utf8');
      this.#configured = Boolean((JSON.parse(text) as { mcpServers?: Record<string, unknown> }).mcpServers?.[SERVER_NAME]);
    } catch {
      this.#configured = false;
    }
  }
}
