/**
 * How Countersign writes the name of a table or function in a RAR, a prompt and an approval scope:
 * always schema-qualified (`public.patients`, `pg_catalog.lower`), each part bare when PostgreSQL would
 * read it back unchanged and double-quoted otherwise, so one string names one object.
 */
import { AppError } from '../../../../common/errors.ts';

/** The schema unqualified table names resolve to: the connector pins the session's search_path to it. */
export const TABLE_SCHEMA = 'public';
/** Where unqualified function, operator and type names resolve first (PostgreSQL searches it before the path). */
export const CATALOG_SCHEMA = 'pg_catalog';

const BARE = /^[a-z_][a-z0-9_$]*$/;
// Printable ASCII without the double quote: anything else (dots are fine inside quotes, but control and
// format characters, other scripts' look-alike letters) could show a person one name and run another.
const NAMEABLE = /^[\x20-\x21\x23-\x7e]+$/;

/** One identifier as PostgreSQL's quote_ident would write it (keywords aside: we never emit SQL from it). */
function quoteIdent(part: string): string {
  return BARE.test(part) ? part : `"${part.replace(/"/g, '""')}"`;
}

/** `schema.name`, each part quoted when needed. */
export function qualifiedName(schema: string, name: string): string {
  return `${quoteIdent(schema)}.${quoteIdent(name)}`;
}

/**
 * Checks that an identifier can be shown to a person without ambiguity; throws SQL_UNCLASSIFIABLE
 * otherwise (a table named with a Cyrillic letter, a zero-width space or a quote is refused, not guessed).
 */
export function assertNameable(part: string, what: string): void {
  if (!NAMEABLE.test(part) || part.includes('.') || part.trim() !== part) {
    throw new AppError(
      'SQL_UNCLASSIFIABLE',
      `The statement names a ${what} ${JSON.stringify(part)} that cannot be shown unambiguously (only printable ASCII without dots, quotes or surrounding spaces is accepted); rename it or leave it out.`,
    );
  }
}

/**
 * A policy key as the classifier writes table names: `patients` and `public.patients` are the same
 * table (keys written before names were qualified keep working); `"Odd"` and `s.t` are parsed as
 * written.
 */
export function normaliseTableKey(key: string, defaultSchema = TABLE_SCHEMA): string {
  const parts = splitQualified(key);
  if (parts.length === 1) return qualifiedName(defaultSchema, parts[0]!);
  if (parts.length === 2) return qualifiedName(parts[0]!, parts[1]!);
  return key;
}

/** Splits `a.b` or `"a".b` into its identifiers (unquoted parts fold to lower case, as PostgreSQL does). */
export function splitQualified(text: string): string[] {
  const parts: string[] = [];
  let i = 0;
  while (i < text.length) {
    if (text[i] === '"') {
      let j = i + 1;
      let part = '';
      while (j < text.length) {
        if (text[j] === '"' && text[j + 1] === '"') {
          part += '"';
          j += 2;
        } else if (text[j] === '"') break;
        else part += text[j++];
      }
      parts.push(part);
      i = j + 1;
    } else {
      const end = text.indexOf('.', i);
      parts.push(text.slice(i, end === -1 ? text.length : end).toLowerCase());
      i = end === -1 ? text.length : end;
    }
    if (text[i] === '.') i += 1;
  }
  return parts;
}
