/**
 * One MCP server per bridge connection, hosted in the core so progress ("waiting for your approval…")
 * and cancellation reach the call directly. Tools come from the ToolHost (the broker); the low-level
 * SDK `Server` is used rather than `McpServer` because the tools arrive as JSON Schema, not zod.
 *
 * Errors follow MCP's split (server/tools "Error Handling"): an unknown tool is a JSON-RPC error
 * (-32602); anything that fails inside the call (IdP, Vault, approval, database) is a result with
 * `isError: true` and the AppError's message, never a foreign error's text.
 */
import { randomUUID } from 'node:crypto';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import {
  CallToolRequestSchema,
  ErrorCode,
  ListToolsRequestSchema,
  McpError,
  type CallToolResult,
  type Tool,
} from '@modelcontextprotocol/sdk/types.js';
import { AppError } from '../../../common/errors.ts';
import type { ToolHost } from '../connectors/types.ts';
import { CLAUDE_TOOL_NAME } from '../connectors/mcp-upstream/tool-names.ts';
import type { PeerIdentity } from './peer.ts';
import { TimeLimit } from '../time-limit.ts';

export interface SessionInfo {
  sessionId: string;
  /** clientInfo as the MCP client asserted it, plus the peer process as the OS identified it (when it could). */
  client: { name?: string; version?: string; pid?: number; uid?: number };
  /** Always true: name and version come from the client's own `initialize`, not from the OS. */
  clientInfoSelfAsserted: true;
  connectedAt: string;
}

export interface McpSession {
  readonly info: SessionInfo;
  close(): Promise<void>;
}

export interface McpSessionOptions {
  transport: Transport;
  toolHost: ToolHost;
  /**
   * Looks up the peer process (peer.ts). Called once, after the client's `initialize` has been
   * answered (or at its first call): the lookup starts a process, which would otherwise delay the
   * handshake and the first answer a freshly spawned bridge waits for.
   */
  peer: () => Promise<PeerIdentity>;
  serverInfo: { name: string; version: string };
  onInitialized?: (info: SessionInfo) => void;
  onClosed?: (sessionId: string) => void;
  /** Each tool list as it is handed out to this session. */
  onListed?: (sessionId: string, tools: readonly Tool[]) => void;
  /** CALL_DEADLINE_MS unless a test shortens it. */
  callDeadlineMs?: number;
}

/**
 * Every call is answered before this, whatever the person does (an approval left open, a step-up
 * never finished): Claude Desktop gives up on a request at 60 s (the MCP SDK's default request
 * time-out) and then shows no answer at all, so Countersign stops the call itself and says why.
 */
export const CALL_DEADLINE_MS = 55_000;

const INSTRUCTIONS =
  'Countersign runs each tool call under your own identity: it may ask you to approve a call in the Countersign app, and it records every call.';

export async function startMcpSession(options: McpSessionOptions): Promise<McpSession> {
  const { toolHost } = options;
  const info: SessionInfo = {
    sessionId: randomUUID(),
    client: {},
    clientInfoSelfAsserted: true,
    connectedAt: new Date().toISOString(),
  };
  let peer: PeerIdentity = {};
  let peerLookup: Promise<PeerIdentity> | undefined;
  const lookUpPeer = (): Promise<PeerIdentity> => {
    peerLookup ??= options.peer().then(
      (p) => {
        peer = p;
        Object.assign(info.client, definedOnly(p));
        return p;
      },
      () => ({}),
    );
    return peerLookup;
  };

  const server = new Server(options.serverInfo, {
    capabilities: { tools: { listChanged: true } },
    instructions: INSTRUCTIONS,
  });
  server.onerror = () => {};
  server.oninitialized = () => {
    const ci = server.getClientVersion();
    info.client = { ...definedOnly({ name: clip(ci?.name), version: clip(ci?.version) }), ...definedOnly(peer) };
    void lookUpPeer();
    options.onInitialized?.(info);
  };

  server.setRequestHandler(ListToolsRequestSchema, async () => {
    let tools: Tool[];
    try {
      tools = (await toolHost.listTools()).filter(claudeAccepts);
    } catch (error) {
      throw new McpError(ErrorCode.InternalError, AppError.from(error).message);
    }
    options.onListed?.(info.sessionId, tools);
    return { tools };
  });

  server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const args = request.params.arguments ?? {};
    if (typeof args !== 'object' || Array.isArray(args)) throw new McpError(ErrorCode.InvalidParams, 'Tool arguments must be an object.');
    if (info.client.pid === undefined) Object.assign(info.client, definedOnly(await withTimeout(lookUpPeer(), 500, {})));
    const progressToken = request.params._meta?.progressToken;
    let progress = 0;
    const seconds = Math.round((options.callDeadlineMs ?? CALL_DEADLINE_MS) / 1000);
    using deadline = new TimeLimit(
      options.callDeadlineMs ?? CALL_DEADLINE_MS,
      () => new AppError('TIMEOUT', `Countersign stopped this call after ${seconds} s without an answer (Claude stops waiting at 60 s). Nothing was left running; try again.`),
    );
    try {
      return await toolHost.callTool({
        name: request.params.name,
        args,
        requestId: extra.requestId,
        sessionId: info.sessionId,
        client: { ...info.client },
        signal: AbortSignal.any([extra.signal, deadline.signal]),
        progress(message) {
          if (progressToken === undefined || extra.signal.aborted) return;
          progress += 1;
          extra
            .sendNotification({ method: 'notifications/progress', params: { progressToken, progress, message } })
            .catch(() => {});
        },
      });
    } catch (error) {
      // Past the deadline the answer is the deadline's, whatever the call threw as it stopped.
      const appError = deadline.signal.aborted && !extra.signal.aborted ? AppError.from(deadline.signal.reason) : AppError.from(error);
      if (appError.code === 'TOOL_UNKNOWN' || appError.code === 'INPUT_INVALID') {
        throw new McpError(ErrorCode.InvalidParams, appError.message);
      }
      return { isError: true, content: [{ type: 'text', text: appError.message }], _meta: { 'countersign/code': appError.code } };
    }
  });

  const unsubscribe = toolHost.onToolsChanged(() => {
    server.sendToolListChanged().catch(() => {});
  });
  let closed = false;
  server.onclose = () => {
    if (closed) return;
    closed = true;
    unsubscribe();
    options.onClosed?.(info.sessionId);
  };
  await server.connect(options.transport);

  return {
    info,
    async close() {
      await server.close();
    },
  };
}

/**
 * Claude Desktop withholds every tool of a server when one tool's name or schema fails its checks
 * (docs/claude-desktop.md), so a tool that would fail them is left out here, whichever connector
 * listed it: one tool lost rather than all of them.
 */
export function claudeAccepts(tool: Tool): boolean {
  const schema = tool.inputSchema as Record<string, unknown>;
  return CLAUDE_TOOL_NAME.test(tool.name) && schema.type === 'object' && !('oneOf' in schema || 'anyOf' in schema || 'allOf' in schema);
}

function clip(value: string | undefined): string | undefined {
  return typeof value === 'string' ? value.slice(0, 200) : undefined;
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function withTimeout<T>(promise: Promise<T>, ms: number, fallback: T): Promise<T> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(fallback), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      () => {
        clearTimeout(timer);
        resolve(fallback);
      },
    );
  });
}
