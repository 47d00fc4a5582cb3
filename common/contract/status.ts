/** The app's status as the UI shows it: the person, the session, the IdP, Vault, Claude Desktop, the bridges. */
import { z } from 'zod';
import { IsoTime } from './fields.ts';

export const UserSchema = z.object({ sub: z.string(), name: z.string().optional(), email: z.string().optional() });
export type User = z.infer<typeof UserSchema>;

export const BridgeSessionSchema = z.object({
  id: z.string(),
  /** `clientInfo` as the MCP client describes itself: self-asserted. */
  clientName: z.string().optional(),
  clientVersion: z.string().optional(),
  /** The peer process as the OS identifies it, where it can. */
  pid: z.number().int().optional(),
  connectedAt: IsoTime,
  calls: z.number().int().nonnegative().default(0),
});
export type BridgeSession = z.infer<typeof BridgeSessionSchema>;

const Reachability = z.enum(['ok', 'unreachable', 'sealed', 'unknown']);

/**
 * Where secrets live, as the host found the OS keychain at start (main/core/secrets/open-secret-store.ts).
 * `persistent: false` is the in-memory fallback: nothing is kept between starts, `code` says which
 * failure (`KEYCHAIN_UNAVAILABLE`: no keychain service reached; `KEYCHAIN_LOCKED`: it refused access)
 * and `reason` is the sentence the person can act on.
 */
export const KeychainStateSchema = z.discriminatedUnion('persistent', [
  z.object({ persistent: z.literal(true) }),
  z.object({ persistent: z.literal(false), code: z.enum(['KEYCHAIN_UNAVAILABLE', 'KEYCHAIN_LOCKED']), reason: z.string().max(1000) }),
]);
export type KeychainState = z.infer<typeof KeychainStateSchema>;

export const StatusSchema = z.object({
  host: z.enum(['electron', 'headless']),
  version: z.string(),
  /** The app runs against the local identity lab: the UI shows a banner. */
  demo: z.boolean(),
  user: UserSchema.nullable(),
  /**
   * The sign-in session. While signing in, `url` is the sign-in page (shown where no browser could be
   * opened) and `userCode` the device code; `reason` says why a sign-in is needed. Never a token.
   */
  session: z
    .object({
      state: z.enum(['signed_out', 'signing_in', 'signed_in', 'needs_sign_in']),
      url: z.string().max(4000).optional(),
      userCode: z.string().max(100).optional(),
      reason: z.string().max(1000).optional(),
      /**
       * False when the sign-in lasts until the app stops: no keychain is usable (`keychain` says why),
       * or the IdP issued no refresh token.
       */
      persistent: z.boolean().optional(),
    })
    .default({ state: 'signed_out' }),
  /** The OS keychain as found at start; absent where the host has not opened it (the setup screen, an older core). */
  keychain: KeychainStateSchema.optional(),
  /** `delegation`: the profile every exchange runs under (`rar` or `scopes`), shown so none reads as stronger than it is. */
  idp: z.object({ issuer: z.string(), state: Reachability, delegation: z.enum(['rar', 'scopes']).default('rar') }),
  /** Vault as its `sys/health` says it is (`unknown` only until the first answer). */
  vault: z.object({
    address: z.string(),
    state: z.enum(['ok', 'sealed', 'standby', 'uninitialized', 'unreachable', 'unknown']),
    initialized: z.boolean().optional(),
    sealed: z.boolean().optional(),
    version: z.string().max(100).optional(),
  }),
  claudeDesktop: z.object({
    configured: z.boolean(),
    connected: z.boolean(),
    /** A connected session was given other tools than Countersign now offers: Claude Desktop must be restarted to see them. */
    restartNeeded: z.boolean().optional(),
  }),
  bridgeSessions: z.array(BridgeSessionSchema),
  pendingApprovals: z.number().int().nonnegative().default(0),
  /** Tool calls on the audit timeline (every outcome). */
  calls: z.number().int().nonnegative().default(0),
  /** Nothing is configured yet: the UI shows the setup screen and the other channels refuse. */
  setup: z.boolean().optional(),
});
export type Status = z.infer<typeof StatusSchema>;
