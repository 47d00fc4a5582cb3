/**
 * An MCP client that behaves as Claude Desktop does, for the tests: the MCP SDK's Client over the SDK's
 * stdio transport, plus the checks and habits Claude Desktop has and the SDK client lacks. Each one
 * comes from a public report of what Claude Desktop does:
 *
 * - It spawns each stdio server twice at launch, both processes alive at once, each its own session:
 *   https://github.com/anthropics/claude-code/issues/53134 , https://github.com/anthropics/claude-code/issues/50422 ,
 *   https://github.com/aaddrick/claude-desktop-debian/issues/526 , https://github.com/modelcontextprotocol/servers/issues/812
 * - `initialize` with protocol `2025-11-25` and clientInfo `{name: "claude-ai", version: "0.1.0"}`:
 *   https://github.com/modelcontextprotocol/servers/issues/4153 (its log shows both).
 * - Every tool name must match `^[a-zA-Z0-9_-]{1,64}$`; one name that does not, and the whole server's
 *   tools are withheld ("tools.N.FrontendRemoteMcpToolDefinition.name: String should match pattern"):
 *   https://github.com/evoila/meho/issues/2745 , https://github.com/barryw/ImmichMCP/issues/3 ,
 *   https://github.com/anthropics/claude-code/issues/34960 (over 64 characters).
 * - A tool's input schema must be an object schema with no `oneOf`/`anyOf`/`allOf` at its top level,
 *   or Claude's API refuses the request ("input_schema does not support oneOf, allOf, or anyOf at the
 *   top level"): https://github.com/dearlordylord/huly-mcp/issues/66 , https://github.com/anthropics/claude-code/issues/5973
 * - `notifications/tools/list_changed` is answered with a new `tools/list` whose tools are discarded:
 *   only the first listing's tools can be called in the session:
 *   https://github.com/anthropics/claude-ai-mcp/issues/960 , https://github.com/anthropics/claude-code/issues/50339
 * - It declares the elicitation capability but never shows an elicitation to the person; the request
 *   stays unanswered until the tool call times out: https://github.com/anthropics/claude-code/issues/88901
 * - A tool result over 1 MB is refused, after the call ran: "Tool result is too large. Maximum size is
 *   1MB.": https://github.com/anthropics/claude-code/issues/66519 (measured here on the result's JSON).
 * - Every request times out at 60 s (the SDK's DEFAULT_REQUEST_TIMEOUT_MSEC, not configurable there):
 *   https://github.com/anthropics/claude-code/issues/22542 , https://github.com/anthropics/claude-code/issues/43791
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import {
  CallToolResultSchema,
  ElicitRequestSchema,
  LATEST_PROTOCOL_VERSION,
  ToolListChangedNotificationSchema,
  type CallToolResult,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';

export const CLAUDE_TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;
export const CLAUDE_PROTOCOL_VERSION = '2025-11-25';
export const CLAUDE_CLIENT_INFO = { name: 'claude-ai', version: '0.1.0' } as const;
export const CLAUDE_REQUEST_TIMEOUT_MS = 60_000;
export const CLAUDE_MAX_RESULT_BYTES = 1_000_000;

/** What Claude Desktop's checks find wrong with a tool list; empty when it accepts it. */
export function claudeListProblems(tools: readonly Tool[]): string[] {
  const problems: string[] = [];
  tools.forEach((tool, i) => {
    if (!CLAUDE_TOOL_NAME.test(tool.name)) problems.push(`tools.${i}.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$' (${JSON.stringify(tool.name)})`);
    const schema = tool.inputSchema as Record<string, unknown> | undefined;
    if (!schema || schema.type !== 'object') problems.push(`tools.${i}.input_schema: type must be "object"`);
    for (const k of ['oneOf', 'anyOf', 'allOf']) {
      if (schema && k in schema) problems.push(`tools.${i}.input_schema: input_schema does not support oneOf, allOf, or anyOf at the top level`);
    }
  });
  return problems;
}

export interface ClaudeDesktopLikeOptions {
  /** The bundled bridge (dist/bridge.mjs or a test build). */
  bridgePath: string;
  env: Record<string, string>;
  /** Where the bridge's stderr goes: collected lines by default. */
  stderr?: 'collect' | 'ignore';
}

/** One of Claude Desktop's sessions with a server: one spawned bridge. */
export class ClaudeDesktopLikeSession {
  readonly client: Client;
  readonly transport: StdioClientTransport;
  /** The tools the model can call in this session: the first listing's, when Claude accepted it. */
  tools: Tool[] = [];
  /** Why Claude withheld the first listing (empty: it accepted it). */
  problems: string[] = [];
  /** Lists Claude made after `list_changed`, whose tools it discarded. */
  readonly discardedListings: Tool[][] = [];
  listChangedSeen = 0;
  elicitationsSeen = 0;
  readonly stderr: string[] = [];
  #closed = false;

  readonly options: ClaudeDesktopLikeOptions;

  constructor(options: ClaudeDesktopLikeOptions) {
    this.options = options;
    this.client = new Client(CLAUDE_CLIENT_INFO, { capabilities: { elicitation: { form: {}, url: {} } } });
    this.transport = new StdioClientTransport({
      command: process.execPath,
      args: [options.bridgePath],
      env: { ...getDefaultEnvironment(), ...options.env },
      stderr: options.stderr === 'ignore' ? 'ignore' : 'pipe',
    });
    this.transport.stderr?.on('data', (chunk: Buffer) => this.stderr.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
    // Declared, never shown to the person: the request is never answered.
    this.client.setRequestHandler(ElicitRequestSchema, () => {
      this.elicitationsSeen += 1;
      return new Promise<never>(() => {});
    });
    this.client.setNotificationHandler(ToolListChangedNotificationSchema, async () => {
      this.listChangedSeen += 1;
      if (this.#closed) return;
      try {
        const again = await this.client.listTools({}, { timeout: CLAUDE_REQUEST_TIMEOUT_MS });
        this.discardedListings.push(again.tools);
      } catch {
        // Claude does nothing with this list either way
      }
    });
  }

  get pid(): number | null {
    return this.transport.pid;
  }

  /** initialize (protocol 2025-11-25) and the first tools/list, as Claude Desktop does at launch. */
  async start(): Promise<this> {
    if (LATEST_PROTOCOL_VERSION !== CLAUDE_PROTOCOL_VERSION) {
      throw new Error(`the MCP SDK now sends protocol ${LATEST_PROTOCOL_VERSION}; this client must send ${CLAUDE_PROTOCOL_VERSION} as Claude Desktop does`);
    }
    await this.client.connect(this.transport, { timeout: CLAUDE_REQUEST_TIMEOUT_MS });
    const first = await this.client.listTools({}, { timeout: CLAUDE_REQUEST_TIMEOUT_MS });
    this.problems = claudeListProblems(first.tools);
    this.tools = this.problems.length === 0 ? first.tools : [];
    return this;
  }

  /** A call the model can make: only to a tool of the session's first listing (otherwise "Tool not found"). */
  async call(name: string, args: Record<string, unknown> = {}): Promise<CallToolResult> {
    if (!this.tools.some((t) => t.name === name)) throw new Error(`Tool not found: ${name} is not in this session's first listing`);
    const result = (await this.client.callTool({ name, arguments: args }, CallToolResultSchema, { timeout: CLAUDE_REQUEST_TIMEOUT_MS })) as CallToolResult;
    if (Buffer.byteLength(JSON.stringify(result)) > CLAUDE_MAX_RESULT_BYTES) throw new Error('Tool result is too large. Maximum size is 1MB.');
    return result;
  }

  /** Claude Desktop killing this server's process (a crash, or one of the two spawns going away). */
  kill(): void {
    if (this.pid !== null) process.kill(this.pid, 'SIGKILL');
  }

  async close(): Promise<void> {
    this.#closed = true;
    await this.client.close().catch(() => {});
  }
}

/** Claude Desktop's launch: the bridge spawned twice at the same instant, both sessions started at once. */
export async function launchLikeClaudeDesktop(options: ClaudeDesktopLikeOptions): Promise<[ClaudeDesktopLikeSession, ClaudeDesktopLikeSession]> {
  const a = new ClaudeDesktopLikeSession(options);
  const b = new ClaudeDesktopLikeSession(options);
  const started = await Promise.allSettled([a.start(), b.start()]);
  const failed = started.find((s) => s.status === 'rejected');
  if (failed) {
    await Promise.all([a.close(), b.close()]);
    throw (failed as PromiseRejectedResult).reason;
  }
  return [a, b];
}

/** The text of a tool result, for assertions. */
export function resultText(result: CallToolResult): string {
  return result.content.map((c) => (c.type === 'text' ? c.text : '')).join('');
}
