import { setTimeout as sleep } from 'node:timers/promises';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { z } from 'zod';

/** Tools of the identity-protected upstream. `approve_payment` needs an MFA login (RFC 9470 at the HTTP layer). */
export const MFA_TOOLS: ReadonlySet<string> = new Set(['approve_payment']);
export const ACR_MFA = 'urn:countersign:acr:mfa';

/** Told when a call's handler is cancelled by the client (`notifications/cancelled`, its reason given). */
export type OnCancelled = (tool: string, reason: string) => void;

export function registerIdentityTools(server: McpServer, who: () => string, onCancelled: OnCancelled = () => {}): void {
  let tickets = 0;
  server.registerTool(
    'get_weather',
    {
      description: 'Current weather for a city.',
      inputSchema: { city: z.string().min(1).max(100) },
      annotations: { readOnlyHint: true, openWorldHint: false },
    },
    async ({ city }) => ({
      content: [{ type: 'text', text: `Weather in ${city} for ${who()}: 21°C, clear.` }],
      structuredContent: { city, celsius: 21, sky: 'clear', for: who() },
    }),
  );
  server.registerTool(
    'create_ticket',
    {
      description: 'Opens a support ticket.',
      inputSchema: { title: z.string().min(1).max(200), body: z.string().max(5000).optional() },
      annotations: { readOnlyHint: false, destructiveHint: false },
    },
    async ({ title }) => {
      tickets += 1;
      return { content: [{ type: 'text', text: `Created ticket T-${tickets} "${title}" for ${who()}.` }] };
    },
  );
  server.registerTool(
    'approve_payment',
    {
      description: 'Approves a pending payment (requires a multi-factor login).',
      inputSchema: { payment_id: z.string().min(1).max(64), amount: z.number().positive() },
      annotations: { readOnlyHint: false, destructiveHint: true },
    },
    async ({ payment_id, amount }) => ({
      content: [{ type: 'text', text: `Payment ${payment_id} of ${amount} approved by ${who()}.` }],
    }),
  );
  server.registerTool(
    'generate_report',
    {
      description: 'Builds a report in steps, reporting progress.',
      inputSchema: { steps: z.number().int().min(1).max(20), step_ms: z.number().int().min(0).max(60_000) },
      annotations: { readOnlyHint: true },
    },
    async ({ steps, step_ms }, extra) => {
      // The SDK aborts a handler on the client's notifications/cancelled (with its reason) and when
      // the session's transport closes (without one, which the session's end here never does mid-call).
      extra.signal.addEventListener('abort', () => onCancelled('generate_report', String(extra.signal.reason ?? '')), { once: true });
      const progressToken = extra._meta?.progressToken;
      for (let i = 1; i <= steps; i++) {
        await sleep(step_ms, undefined, { signal: extra.signal });
        if (progressToken !== undefined) {
          await extra.sendNotification({
            method: 'notifications/progress',
            params: { progressToken, progress: i, total: steps, message: `step ${i} of ${steps}` },
          });
        }
      }
      return { content: [{ type: 'text', text: `Report of ${steps} steps ready.` }] };
    },
  );
}

export function registerEchoTool(server: McpServer, name: string): void {
  server.registerTool(
    name,
    { description: `Echoes its input (${name}).`, inputSchema: { text: z.string().max(1000) }, annotations: { readOnlyHint: true } },
    async ({ text }) => ({ content: [{ type: 'text', text }] }),
  );
}

export function registerApiKeyTools(server: McpServer): void {
  server.registerTool(
    'get_quote',
    {
      description: 'Latest price of a stock symbol.',
      inputSchema: { symbol: z.string().regex(/^[A-Z]{1,5}$/) },
      annotations: { readOnlyHint: true },
    },
    async ({ symbol }) => ({ content: [{ type: 'text', text: `${symbol}: 123.45` }], structuredContent: { symbol, price: 123.45 } }),
  );
}
