/**
 * A remote MCP server behind Countersign (Streamable HTTP). Its tools are listed as `<name>__<tool>`
 * (tool-names.ts: names Claude Desktop accepts) and each call is described by a RAR (`mcp_tool_call` with an argument digest, or `api_key` for upstreams
 * that take a static key from Vault). The broker exchanges and fetches the credential; this connector
 * only carries it: a fresh connection per call, the OBO or key held for that call alone.
 */
import type { webcrypto } from 'node:crypto';
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';
import { CallToolResultSchema, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import type { JsonSchemaType, JsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/types.js';
import { AppError } from '../../../../common/errors.ts';
import type { AuthorizationDetail, CallPlan, Connector, Credential, CredentialPlan, ExecuteContext, Tier } from '../types.ts';
import { canonicalJson, sha256Digest } from './canonical-json.ts';
import { UpstreamConfigSchema } from './config.ts';
import type { UpstreamConfig, UpstreamConfigInput } from './config.ts';
import type { ListingCache } from './listing-cache.ts';
import { publishedPart } from './listing-cache.ts';
import { discoverResourceMetadata } from './metadata.ts';
import type { ResourceMetadata } from './metadata.ts';
import { tierFor } from './tiers.ts';
import { exposedToolName, UPSTREAM_SEPARATOR } from './tool-names.ts';
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

interface UpstreamTool {
  tool: Tool;
  /** The name Countersign lists it under (tool-names.ts). */
  exposed: string;
  tier: Tier;
  validate: JsonSchemaValidator<unknown>;
}

const LISTING_WAIT_FOR_STREAM_MS = 5_000;

export class McpUpstreamConnector implements Connector {
  readonly name: string;
  readonly config: UpstreamConfig;
  readonly #deps: McpUpstreamDeps;
  readonly #validators = new AjvJsonSchemaValidator();
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
    const kept = deps.listings?.read(this.name, this.config.url);
    if (kept) {
      this.#tools = this.#index(kept);
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
    const local = entry.tool.name;
    const checked = entry.validate(args);
    if (!checked.valid) {
      throw new AppError('INPUT_INVALID', `The arguments for ${tool} do not match its input schema.`);
    }
    if (entry.tier === 4) throw new AppError('POLICY_BLOCKED', `Your policy blocks ${tool}.`);
    let bytes: string;
    try {
      bytes = canonicalJson(args);
    } catch (error) {
      throw new AppError('INPUT_INVALID', `The arguments for ${tool} cannot be written as JSON.`, { cause: error });
    }
    const url = this.config.url;
    const base = {
      connector: this.name,
      tool,
      tier: entry.tier,
      reason: `${entry.tier === 1 ? 'read-only' : entry.tier === 2 ? 'write' : 'sensitive'} call of ${local} on ${this.name}`,
      target: url,
      bytes,
      ...(entry.tier === 2 ? { approvalScope: { statementClass: 'mcp_tool_call', targets: [tool] } } : {}),
    };
    if (this.config.auth === 'api-key') return { ...base, ...this.#apiKeyLeg() };
    const detail: AuthorizationDetail = {
      type: 'mcp_tool_call',
      locations: [url],
      actions: ['call'],
      identifier: local,
      argument_digest: sha256Digest(bytes),
    };
    return { ...base, authorizationDetails: [detail], resource: url, credential: { kind: 'obo' } };
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
    const plan = this.#listingPlan();
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
          this.#tools = this.#index(tools);
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
      await session?.close({ terminate: reason === undefined });
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

  #listingPlan(): CallPlan {
    const base = { connector: this.name, tool: `${this.name}.*`, tier: 1 as Tier, target: this.config.url, bytes: '' };
    if (this.config.auth === 'api-key') return { ...base, reason: `listing the tools of ${this.name}`, ...this.#apiKeyLeg() };
    return {
      ...base,
      reason: `listing the tools of ${this.name}`,
      authorizationDetails: [
        {
          type: 'mcp_tool_call',
          locations: [this.config.url],
          actions: ['list'],
          identifier: 'tools/list',
          argument_digest: sha256Digest(canonicalJson({})),
        },
      ],
      resource: this.config.url,
      credential: { kind: 'obo' },
    };
  }

  #apiKeyLeg(): { authorizationDetails: AuthorizationDetail[]; audience: string; credential: CredentialPlan } {
    const k = this.config.apiKey;
    if (!k) throw new AppError('CONFIG_INVALID', `The upstream ${this.name} has no API-key settings.`);
    return {
      authorizationDetails: [{ type: 'api_key', locations: [this.config.url], actions: ['read'], identifier: this.name }],
      audience: k.audience,
      credential: { kind: 'vault-kv', authMount: k.authMount, role: k.role, kvMount: k.kvMount, path: k.path, field: k.field },
    };
  }

  /**
   * The tools by the names Countersign lists. Names are stable and distinct by construction; an
   * upstream that publishes two tools whose names still meet (one named like another's rewritten
   * name) loses both, rather than one call reaching the other tool.
   */
  #index(tools: readonly Tool[]): Map<string, UpstreamTool> {
    const byName = new Map<string, UpstreamTool>();
    const clashing = new Set<string>();
    for (const tool of tools) {
      const entry = this.#describe(tool);
      if (byName.has(entry.exposed)) clashing.add(entry.exposed);
      else byName.set(entry.exposed, entry);
    }
    for (const name of clashing) {
      byName.delete(name);
      this.#deps.log?.(`upstream ${this.name}: two of its tools would both be listed as ${name}; both are left out`);
    }
    return byName;
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

  #describe(tool: Tool): UpstreamTool {
    let validate: JsonSchemaValidator<unknown>;
    try {
      validate = this.#validators.getValidator(tool.inputSchema as JsonSchemaType);
    } catch {
      validate = () => ({ valid: false, data: undefined, errorMessage: 'unusable schema' });
    }
    return { tool, exposed: exposedToolName(this.name, tool.name), tier: tierFor(tool.name, tool.annotations, this.config.tools), validate };
  }

  /** The tool as Countersign lists it: namespaced, with annotations that say its tier, not the upstream's claims. */
  #current(): Tool[] {
    return [...this.#tools.values()].filter((t) => t.tier < 4).map((t) => this.#exposed(t));
  }

  #announce(): void {
    for (const listener of this.#listeners) listener();
  }

  /**
   * The tool as Countersign lists it. The upstream's own name and the upstream stay readable where a
   * person and the model look: the title, the description, and `_meta`.
   */
  #exposed({ tool, exposed, tier }: UpstreamTool): Tool {
    const { outputSchema: _outputSchema, _meta: _upstreamMeta, ...rest } = tool;
    return {
      ...rest,
      inputSchema: listableSchema(tool.inputSchema),
      name: exposed,
      title: tool.title ?? tool.annotations?.title ?? tool.name,
      description: `${tool.description ?? tool.name} (tool ${tool.name} of ${this.name})`,
      _meta: { 'countersign/upstream': this.name, 'countersign/tool': tool.name },
      annotations: {
        ...(tool.annotations?.title ? { title: tool.annotations.title } : {}),
        readOnlyHint: tier === 1,
        destructiveHint: tier >= 3,
        openWorldHint: true,
      },
    };
  }
}

/**
 * The input schema as listed: Claude's API refuses a tool whose input schema has `oneOf`, `anyOf` or
 * `allOf` at its top level, and with it the whole request, so those are left out of the listed schema.
 * Calls are still checked against the upstream's whole schema (`#describe`).
 */
function listableSchema(schema: Tool['inputSchema']): Tool['inputSchema'] {
  const { oneOf: _one, anyOf: _any, allOf: _all, ...rest } = schema as Tool['inputSchema'] & Record<'oneOf' | 'anyOf' | 'allOf', unknown>;
  return rest;
}

function checkTransportSecurity(config: UpstreamConfig): void {
  const url = new URL(config.url);
  if (url.protocol === 'https:') return;
  const loopback = ['127.0.0.1', '[::1]', 'localhost'].includes(url.hostname);
  if (url.protocol === 'http:' && loopback && config.allowInsecureHttpForLoopbackOnly) {
    process.emitWarning(`Upstream ${config.name} uses plain http on loopback (allowInsecureHttpForLoopbackOnly).`);
    return;
  }
  throw new AppError('CONFIG_INVALID', `The upstream ${config.name} must use https.`);
}
