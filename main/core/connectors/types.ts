/**
 * What the broker needs from a connector (PostgreSQL, a remote MCP server…). A connector describes its
 * tools, turns one call into a plan the broker can ask about and exchange for (tier, RAR, the exact bytes
 * that will run), and executes the plan with the per-call credential the broker obtained. A connector
 * never decides that a call is allowed: it only describes the call truthfully and completely.
 */
import type { CallToolResult, Tool } from '@modelcontextprotocol/sdk/types.js';

export type Tier = 1 | 2 | 3 | 4;

/** One RFC 9396 authorization details object. */
export interface AuthorizationDetail {
  type: string;
  locations?: string[];
  actions?: string[];
  datatypes?: string[];
  identifier?: string;
  privileges?: string[];
  [field: string]: unknown;
}

/** How the per-call credential is obtained once the OBO token is in hand. */
export type CredentialPlan =
  | { kind: 'vault-database'; authMount: string; role: string; dbMount: string; dbRole: string }
  | { kind: 'vault-kv'; authMount: string; role: string; kvMount: string; path: string; field: string }
  /** The OBO token itself is the credential (a remote MCP server whose audience it names). */
  | { kind: 'obo' };

/**
 * Scope of a tier-2 approval: writes of this class to these tables under this row ceiling. A cached
 * approval covers a later call only when the call's class is the same, each of its changes and each of
 * its tables is among the approved ones, and its ceiling is no higher; a scope naming no table or no
 * change covers nothing.
 */
export interface ApprovalScope {
  statementClass: string;
  /** Every table (or upstream tool) the call touches, read or written; schema-qualified for SQL. */
  targets: string[];
  /**
   * Every change the call makes, as `<class> <table>` (`UPDATE public.appointments`,
   * `INSERT_ON_CONFLICT_UPDATE public.notes`), so an approval to update A while reading B never
   * covers an update of B. Absent: each target is changed with `statementClass` (an upstream tool).
   */
  changes?: string[];
  rowCeiling?: number;
}

export interface CallPlan {
  connector: string;
  tool: string;
  tier: Tier;
  /** Why this tier, for the approval prompt and the audit record ("bounded UPDATE of appointments"). */
  reason: string;
  /** The target in one line (`postgres://lab/clinic`, an upstream URL). */
  target: string;
  authorizationDetails: AuthorizationDetail[];
  /** RFC 8693 `audience` (logical name) and/or `resource` (absolute URI) for the exchange. */
  audience?: string;
  resource?: string;
  credential: CredentialPlan;
  /** The exact bytes that will run (SQL text, canonical JSON of upstream arguments): approvals bind to their digest. */
  bytes: string;
  approvalScope?: ApprovalScope;
}

export type Credential =
  | { kind: 'database'; username: string; password: string }
  | { kind: 'api-key'; apiKey: string }
  | { kind: 'obo' };

export interface ExecuteContext {
  plan: CallPlan;
  args: Record<string, unknown>;
  /** The single-call OBO token (RFC 8693). Never the user's own access token. */
  obo: string;
  oboJti: string;
  credential: Credential;
  signal: AbortSignal;
  /** Reports progress to the MCP client (when it sent a progressToken). */
  progress(message: string): void;
  /** Lets a connector add join keys (e.g. the upstream's request id) to the audit record. */
  note(keys: { upstream_request_id?: string; db_role?: string }): void;
}

export interface Connector {
  readonly name: string;
  /** Tools with input schemas and annotations that match their tier. */
  listTools(): Promise<Tool[]>;
  /** Owns this tool name? */
  hasTool(name: string): boolean;
  /** Validates arguments and classifies the call. Throws AppError (INPUT_INVALID, SQL_*, POLICY_BLOCKED). */
  plan(tool: string, args: Record<string, unknown>): Promise<CallPlan>;
  execute(ctx: ExecuteContext): Promise<CallToolResult>;
  /**
   * After revocation, checks at the target that the per-call credential no longer works (PostgreSQL:
   * the role is gone). `gone` proves it; `present` means it still works; `unknown` when the target
   * could not tell. Optional: connectors whose credential is the OBO itself have nothing to check.
   */
  verifyRevoked?(credential: Credential, signal: AbortSignal): Promise<'gone' | 'present' | 'unknown'>;
  /** Called when the tool list changes (remote upstreams). */
  onToolsChanged?(listener: () => void): () => void;
  /** Lists ahead of any client once the user is signed in (remote upstreams); announces a change. */
  warm?(): Promise<void>;
  close?(): Promise<void>;
}

/** What the MCP server in the core calls; implemented by the broker. */
export interface ToolHost {
  listTools(): Promise<Tool[]>;
  callTool(request: ToolCallRequest): Promise<CallToolResult>;
  onToolsChanged(listener: () => void): () => void;
}

export interface ToolCallRequest {
  name: string;
  args: Record<string, unknown>;
  requestId: string | number;
  sessionId: string;
  client: { name?: string; version?: string; pid?: number; uid?: number };
  signal: AbortSignal;
  /** Sends `notifications/progress` when the client supplied a progressToken; a no-op otherwise. */
  progress(message: string): void;
}
