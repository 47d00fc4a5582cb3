/**
 * The value at a dotted path of a configuration (`vault.address`), or undefined: own members only, so
 * a path naming a member every object inherits (`constructor`) finds nothing. One reader for the core's
 * settings and setup and the renderer's forms.
 */
export function valueAt(source: unknown, dotted: string): unknown {
  let at: unknown = source;
  for (const k of dotted.split('.')) {
    at = at !== null && typeof at === 'object' && Object.hasOwn(at, k) ? (at as Record<string, unknown>)[k] : undefined;
  }
  return at;
}

/** Whether a dotted path is one of `fields` or lies inside one (`vault` covers `vault.address`): how a managed field is told. */
export function isManaged(fields: readonly string[], path: string): boolean {
  return fields.some((f) => path === f || path.startsWith(`${f}.`));
}
