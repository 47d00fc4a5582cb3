/**
 * Stands in for @noble/hashes' `crypto` module in the bridge's bundle (scripts/build-bridge.mjs). That
 * module imports node:crypto only to give noble a random source, which the hashes and HMAC the bridge
 * uses never ask for; importing it would cost the bridge's start the very load noble is here to spare
 * (bridge/hmac-sha256.ts). Noble's randomBytes throws with this, so a use would show at once.
 */
export const crypto = undefined;
