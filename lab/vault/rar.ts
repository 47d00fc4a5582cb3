/**
 * RFC 9396 `authorization_details` of type `vault:path_access`, as Vault Enterprise enforces them on a
 * request that presents an OAuth JWT (docs/ai/oauth-server/rar/type-specification and /enforcement):
 * the request's path and operation must match at least one entry; an entry's `allowed_parameters`,
 * `denied_parameters` and `required_parameters` narrow the request body; `path` may hold identity
 * templates, and an entry whose template cannot be resolved is skipped. RAR only ever narrows what the
 * ACL grants (the caller checks the ACL first).
 *
 * Where the pages are silent the stand-in takes the narrower reading and says so: paths match exactly
 * (no ACL globs), and parameter values match as ACL parameter values do (a leading or trailing `*` is a
 * glob), so `{"lease_id": ["database/creds/r/*"]}` means "a lease of role r".
 */

export const PATH_ACCESS = 'vault:path_access';

export const RAR_NO_MATCH = 'RAR_NO_MATCH: No valid authorization_details claim found matching this request.';

export interface PathAccess {
  type: typeof PATH_ACCESS;
  path: string;
  capabilities: string[];
  allowed_parameters?: Record<string, unknown[]>;
  denied_parameters?: Record<string, unknown[]>;
  required_parameters?: string[];
}

/** What a template may name: the caller's entity (Vault's identity templating, docs/concepts/policies). */
export interface TemplateEntity {
  id: string;
  name: string;
  metadata: Record<string, string>;
}

function isPathAccess(v: unknown): v is PathAccess {
  if (!v || typeof v !== 'object') return false;
  const e = v as Record<string, unknown>;
  return e['type'] === PATH_ACCESS && typeof e['path'] === 'string' && Array.isArray(e['capabilities']);
}

/** The entries Vault understands; any other type is ignored (`default_unknown_type_behavior: deny`). */
export function pathAccessEntries(details: unknown): PathAccess[] {
  return Array.isArray(details) ? details.filter(isPathAccess) : [];
}

/** Resolves `{{identity.entity.…}}` placeholders; null when one cannot be resolved. */
export function resolveTemplate(path: string, entity: TemplateEntity): string | null {
  let failed = false;
  const out = path.replace(/\{\{\s*([^}\s]+)\s*\}\}/g, (_m, name: string) => {
    let v: string | undefined;
    if (name === 'identity.entity.id') v = entity.id;
    else if (name === 'identity.entity.name') v = entity.name;
    else if (name.startsWith('identity.entity.metadata.')) v = entity.metadata[name.slice('identity.entity.metadata.'.length)];
    if (v === undefined || v === '') failed = true;
    return v ?? '';
  });
  return failed ? null : out;
}

function valueMatches(pattern: unknown, value: unknown): boolean {
  const p = typeof pattern === 'string' ? pattern : JSON.stringify(pattern);
  const v = typeof value === 'string' ? value : JSON.stringify(value);
  if (p === '*') return true;
  if (p.length > 1 && p.endsWith('*') && !p.startsWith('*')) return v.startsWith(p.slice(0, -1));
  if (p.length > 1 && p.startsWith('*') && !p.endsWith('*')) return v.endsWith(p.slice(1));
  return p === v;
}

const values = (v: unknown): unknown[] => (Array.isArray(v) ? v : [v]);

/** Why an entry's parameter constraints refuse this body, or '' when they allow it. */
function parameterProblem(entry: PathAccess, body: Record<string, unknown>): string {
  const keys = Object.keys(body);
  for (const k of entry.required_parameters ?? []) if (!(k in body)) return `missing required parameter "${k}"`;
  const denied = entry.denied_parameters;
  if (denied) {
    for (const k of keys) {
      const rule = denied[k] ?? denied['*'];
      if (!rule) continue;
      if (rule.length === 0) return `parameter "${k}" is denied`;
      if (values(body[k]).some((v) => rule.some((p) => valueMatches(p, v)))) return `a value of parameter "${k}" is denied`;
    }
  }
  const allowed = entry.allowed_parameters;
  if (allowed) {
    for (const k of keys) {
      const rule = allowed[k] ?? allowed['*'];
      if (!rule) return `parameter "${k}" is not allowed`;
      if (rule.length > 0 && !values(body[k]).every((v) => rule.some((p) => valueMatches(p, v)))) return `a value of parameter "${k}" is not allowed`;
    }
  }
  return '';
}

export type RarDecision = { ok: true; entry: PathAccess } | { ok: false; reason: string };

/** Whether one entry grants this operation on this path with this body (the first that does wins). */
export function matchRar(entries: PathAccess[], path: string, operation: string, body: Record<string, unknown>, entity: TemplateEntity): RarDecision {
  let reason = 'no entry names this path and operation';
  for (const entry of entries) {
    const p = resolveTemplate(entry.path.replace(/^\/+/, ''), entity);
    if (p === null || p.replace(/\/+$/, '') !== path.replace(/\/+$/, '')) continue;
    if (!entry.capabilities.includes(operation)) continue;
    const problem = parameterProblem(entry, body);
    if (!problem) return { ok: true, entry };
    reason = problem;
  }
  return { ok: false, reason };
}
