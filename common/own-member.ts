/**
 * Sets `key` on a plain object as an own, enumerable member, also when it is `__proto__`, which a plain
 * assignment would take as the object's prototype: copies of untrusted JSON (a tool's arguments, a
 * result) keep every member they had.
 */
export function setOwnMember(out: Record<string, unknown>, key: string, value: unknown): void {
  if (key === '__proto__') Object.defineProperty(out, key, { value, enumerable: true, writable: true, configurable: true });
  else out[key] = value;
}
