/**
 * A remote MCP server behind Countersign (Streamable HTTP). Its tools are listed as `<name>__<tool>`
 * (tool-catalogue.ts, tool-names.ts: names Claude Desktop accepts) and each call is described by a RAR
 * (call-plans.ts). The broker exchanges and fetches the credential; this connector only carries it: a
 * fresh connection per call (upstream-session.ts), the OBO or key held for that call alone. It keeps
 * the listing fresh and tells the broker when the upstream's tools change.
 */
import type { webcrypto } from 'node:crypto';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { CallToolResultSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { AppError } from '../../../../common/errors.ts';
import type { CallPlan, Connector, Credential, ExecuteContext } from '../types.ts';
import { listingPlan, planCall } from './call-plans.ts';
import { checkTransportSecurity, UpstreamConfigSchema } from './config.ts';
import type { UpstreamConfig, UpstreamConfigInput } from './config.ts';
import type { ListingCache } from './listing-cache.ts';
import { publishedPart } from './listing-cache.ts';
import { discoverResourceMetadata } from './metadata.ts';
import type { ResourceMetadata } from './metadata.ts';
import { ToolCatalogue, type UpstreamTool } from './tool-catalogue.ts';
import { UPSTREAM_SEPARATOR } from './tool-names.ts';
import { classify, oboAccess, openSession } from './upstream-session.ts';
import type { UpstreamAccess, UpstreamSession, WireNotes } from './upstream-session.ts';

type CryptoKeyPair = webcrypto.CryptoKeyPair;

/**
 * Runs `use` with a credential for `plan` and cleans up after it (the broker's exchange and Vault legs).
 * The connector needs one to list an upstream's tools, which happens outside any tool call.
 */
export type CredentialBroker = <T>(
  plan: CallPlan,
  use: (access: { obo: string; credential: Credential }) => Promise<T>,
  signal: AbortSignal,
) => Promise<T>;

export interface McpUpstreamDeps {
  withCredential: CredentialBroker;
  /** TokenSource.dpopKeyPair: the install's DPoP key when the IdP binds tokens to it. */
  dpopKeyPair(): CryptoKeyPair | undefined;
  /** Keeps the last listing (listing-cache.ts), so it is listed before sign-in and after a restart. */
  listings?: ListingCache;
  /** One line per problem with a listing; never a token. */
  log?: (line: string) => void;
}

const LISTING_WAIT_FOR_STREAM_MS = 5_000;

export class McpUpstreamConnector implements Connector {
  readonly name: string;
  readonly config: UpstreamConfig;
  readonly #deps: McpUpstreamDeps;
  readonly #catalogue: ToolCatalogue;
  readonly #listeners = new Set<() => void>();
  /** By the name Countersign lists: from the last fresh listing, or from the kept one until there is one. */
  #tools = new Map<string, UpstreamTool>();
  /** A fresh listing (this run, signed in) is in #tools; until then #tools holds the kept one, if any. */
  #loaded = false;
  #fromCache = false;
  /** The listing as last kept on disk, to write only what changed. */
  #kept: string | undefined;
  /**
   * The tool list as the broker last handed it out (`[]` when the listing failed and the upstream was
   * left out): a listing that finds anything else is announced through onToolsChanged.
   */
  #shown: string | undefined;
  /** The tool list last announced, so the same change is announced once until a client lists. */
  #announced: string | undefined;
  #refreshing: Promise<void> | undefined;
  #watcher: UpstreamSession | undefined;
  #metadata: ResourceMetadata | undefined;
  #closed = false;

  constructor(config: UpstreamConfigInput, deps: McpUpstreamDeps) {
    const parsed = UpstreamConfigSchema.safeParse(config);
    if (!parsed.success) throw new AppError('CONFIG_INVALID', `The upstream configuration is invalid: ${parsed.error.issues[0]?.message ?? 'unknown'}.`);
    this.config = parsed.data;
    this.name = parsed.data.name;
    this.#deps = deps;
    checkTransportSecurity(this.config);
    this.#catalogue = new ToolCatalogue(this.name, this.config.tools, deps.log);
    const kept = deps.listings?.read(this.name, this.config.url);
    if (kept) {
      this.#tools = this.#catalogue.index(kept);
      this.#fromCache = true;
      this.#kept = JSON.stringify(kept.map(publishedPart));
    }
  }

  /** RFC 9728 metadata, after the first successful listing (undefined for API-key upstreams). */
  get metadata(): ResourceMetadata | undefined {
    return this.#metadata;
  }

  /**
   * The tools, from the last fresh listing; before there is one, from the kept listing without asking
   * the upstream (which needs the user's token), so a client's first list is whole at once.
   */
  async listTools(): Promise<Tool[]> {
    try {
      // the caller is about to hand out this list, so there is nothing to announce
      if (!this.#loaded && !this.#fromCache) await this.#refreshOnce();
    } catch (error) {
      this.#shown = '[]';
      throw error;
    }
    const tools = this.#current();
    this.#shown = JSON.stringify(tools);
    this.#announced = undefined;
    return tools;
  }

  /**
   * Lists ahead of the client when the session becomes usable (the user signed in): when a client was
   * already handed a list without this upstream's tools (its listing failed before sign-in), the new
   * tools are announced through onToolsChanged rather than waiting for the client to list again.
   */
  async warm(): Promise<void> {
    if (this.#loaded || this.#closed) return;
    await this.refresh();
  }

  /**
   * Before the first fresh listing the whole `<name>__` namespace is claimed, so a call that arrives
   * first (a client that listed before a restart) reaches `plan()`, which lists and then knows.
   */
  hasTool(name: string): boolean {
    if (!name.startsWith(this.name + UPSTREAM_SEPARATOR)) return false;
    return !this.#loaded || this.#tools.has(name);
  }

  /**
   * Lists the upstream's tools again (single-flight) and keeps a session open for `tools/list_changed`;
   * when the tools differ from the list last handed out, tells onToolsChanged's listeners.
   */
  async refresh(signal?: AbortSignal): Promise<void> {
    await this.#refreshOnce(signal);
    const now = JSON.stringify(this.#current());
    if (now !== this.#shown && now !== this.#announced) {
      this.#announced = now;
      this.#announce();
    }
  }

  #refreshOnce(signal: AbortSignal = AbortSignal.timeout(this.config.timeoutMs)): Promise<void> {
    this.#refreshing ??= this.#refresh(signal).finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  /** Always against a fresh listing: a kept one only lists, it never gives a tier or a schema to a call. */
  async plan(tool: string, args: Record<string, unknown>): Promise<CallPlan> {
    if (!this.#loaded) await this.refresh();
    const entry = this.#tools.get(tool);
    if (!entry) throw new AppError('TOOL_UNKNOWN', `The upstream ${this.name} has no tool named ${tool}.`);
    return planCall(this.config, tool, entry, args);
  }

  async execute(ctx: ExecuteContext): Promise<CallToolResult> {
    const local = this.#tools.get(ctx.plan.tool)?.tool.name;
    if (local === undefined || ctx.plan.connector !== this.name) {
      throw new AppError('INTERNAL', 'A plan for another connector reached this upstream.');
    }
    const access = await this.#access(ctx.obo, ctx.credential);
    return this.#withSession(access, ctx.signal, async (session, signal) => {
      const result = await session.client.callTool({ name: local, arguments: ctx.args }, CallToolResultSchema, {
        signal,
        timeout: this.config.timeoutMs + 1_000,
        onprogress: (p) => ctx.progress(p.message ?? (p.total ? `${p.progress} of ${p.total}` : `${p.progress}`)),
      });
      if (session.notes.requestId) ctx.note({ upstream_request_id: session.notes.requestId });
      return result as CallToolResult;
    });
  }

  onToolsChanged(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const watcher = this.#watcher;
    this.#watcher = undefined;
    await watcher?.close({ terminate: false });
  }

  async #refresh(signal: AbortSignal): Promise<void> {
    if (this.config.auth === 'obo') {
      this.#metadata = await discoverResourceMetadata(this.name, this.config.url, {
        ...(this.config.issuer !== undefined ? { issuer: this.config.issuer } : {}),
        signal,
      });
      if (this.#metadata.dpop_bound_access_tokens_required && !this.#deps.dpopKeyPair()) {
        throw new AppError('CONFIG_INVALID', `The upstream ${this.name} requires DPoP-bound tokens and this install has no DPoP key.`);
      }
    }
    const plan = listingPlan(this.config);
    await this.#deps.withCredential(
      plan,
      async ({ obo, credential }) => {
        const access = await this.#access(obo, credential);
        const session = await this.#open(access, signal);
        try {
          const tools: Tool[] = [];
          let cursor: string | undefined;
          do {
            const page = await session.client.listTools(cursor ? { cursor } : {}, { signal, timeout: this.config.timeoutMs });
            tools.push(...page.tools);
            cursor = page.nextCursor;
          } while (cursor && tools.length < 10_000);
          this.#tools = this.#catalogue.index(tools);
          this.#loaded = true;
          this.#fromCache = false;
          await this.#keep(tools);
        } catch (error) {
          await session.close();
          throw classify(error, session.notes, this.name, signal.aborted ? 'timeout' : undefined);
        }
        await this.#watch(session);
      },
      signal,
    );
  }

  /** Keeps the listing session open to hear `notifications/tools/list_changed`; its credential is dropped. */
  async #watch(session: UpstreamSession): Promise<void> {
    await session.listening(LISTING_WAIT_FOR_STREAM_MS);
    session.forget();
    const previous = this.#watcher;
    this.#watcher = session;
    await previous?.close({ terminate: false });
    if (this.#closed) {
      this.#watcher = undefined;
      await session.close({ terminate: false });
      return;
    }
    session.client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
      if (this.#watcher !== session) return;
      try {
        await this.refresh();
      } catch {
        // the next listing tries again; until then the client is told its list may be stale
        this.#loaded = false;
        this.#announce();
      }
    });
    session.client.onclose = () => {
      if (this.#watcher === session) this.#watcher = undefined;
    };
  }

  async #withSession<T>(access: UpstreamAccess, outer: AbortSignal, run: (s: UpstreamSession, signal: AbortSignal) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    let reason: 'cancelled' | 'timeout' | undefined;
    const onAbort = () => {
      reason ??= 'cancelled';
      controller.abort(outer.reason);
    };
    if (outer.aborted) onAbort();
    else outer.addEventListener('abort', onAbort, { once: true });
    const timer = setTimeout(() => {
      reason ??= 'timeout';
      controller.abort();
    }, this.config.timeoutMs);
    let session: UpstreamSession | undefined;
    try {
      session = await this.#open(access, controller.signal, () => reason);
      return await run(session, controller.signal);
    } catch (error) {
      throw classify(error, session?.notes ?? {}, this.name, reason);
    } finally {
      clearTimeout(timer);
      outer.removeEventListener('abort', onAbort);
      await session?.close({ terminate: reason === undefined, cancelled: reason !== undefined });
    }
  }

  async #open(access: UpstreamAccess, signal: AbortSignal, reason: () => 'cancelled' | 'timeout' | undefined = () => undefined) {
    const notes: WireNotes = {};
    try {
      return await openSession(this.config.url, access, { signal, timeoutMs: this.config.timeoutMs + 1_000, notes });
    } catch (error) {
      throw classify(error, notes, this.name, reason() ?? (signal.aborted ? 'timeout' : undefined));
    }
  }

  async #access(obo: string, credential: Credential): Promise<UpstreamAccess> {
    if (this.config.auth === 'api-key') {
      if (credential.kind !== 'api-key') throw new AppError('INTERNAL', `The upstream ${this.name} needs an API key from Vault.`);
      return { kind: 'api-key', header: this.config.apiKey?.header ?? 'X-API-Key', value: credential.apiKey };
    }
    return oboAccess(obo, this.#deps.dpopKeyPair());
  }

  /** Writes the listing to the data directory when it differs from the kept one; a failure is logged, not fatal. */
  async #keep(tools: readonly Tool[]): Promise<void> {
    const listings = this.#deps.listings;
    if (!listings) return;
    const text = JSON.stringify(tools.map(publishedPart));
    if (text === this.#kept) return;
    try {
      await listings.write(this.name, this.config.url, tools);
      this.#kept = text;
    } catch (error) {
      this.#deps.log?.(`upstream ${this.name}: its listing could not be kept in the data directory (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }

  #current(): Tool[] {
    return this.#catalogue.listed(this.#tools);
  }

  #announce(): void {
    for (const listener of this.#listeners) listener();
  }

}
