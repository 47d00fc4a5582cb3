/**
 * A Vault `file` audit device: one JSON object per line, a `request` entry before the request is
 * handled and a `response` entry after, paired by `request.id`; string values in request and response
 * data, and token strings and accessors, are HMAC-SHA256'd with the device's salt and written as
 * `hmac-sha256:<hex>` (docs/audit/index.mdx, partials/audit/request-entry-json-schema.mdx). Token
 * metadata, policies, paths and lease ids are written as they are, as Vault does.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { appendFile } from 'node:fs/promises';

export class FileAuditDevice {
  readonly path: string;
  readonly filePath: string;
  private readonly salt = randomBytes(32);
  private chain: Promise<void> = Promise.resolve();

  constructor(path: string, filePath: string) {
    this.path = path;
    this.filePath = filePath;
  }

  hash(input: string): string {
    return `hmac-sha256:${createHmac('sha256', this.salt).update(input).digest('hex')}`;
  }

  /** Every string inside is replaced by its HMAC; numbers, booleans and null pass through. */
  hashStructure(value: unknown): unknown {
    if (typeof value === 'string') return this.hash(value);
    if (Array.isArray(value)) return value.map((v) => this.hashStructure(v));
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = this.hashStructure(v);
      return out;
    }
    return value;
  }

  write(entry: Record<string, unknown>): Promise<void> {
    const line = `${JSON.stringify({ time: new Date().toISOString(), ...entry })}\n`;
    this.chain = this.chain.then(() => appendFile(this.filePath, line, { mode: 0o600 })).catch(() => {});
    return this.chain;
  }

  flush(): Promise<void> {
    return this.chain;
  }
}
