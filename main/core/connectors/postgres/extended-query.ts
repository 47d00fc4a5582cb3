/**
 * The one way the connector sends SQL: pg's extended query protocol (Parse/Bind/Execute), even with no
 * parameters. pg otherwise sends a parameterless query as a simple Query message, which runs every
 * statement in the text; a Parse message holds exactly one, so the server itself enforces "one
 * statement per call". `queryMode: 'extended'` is pg's (lib/query.js, 8.23); its types do not list it.
 */
import type pg from 'pg';

export function queryExtended<R extends pg.QueryResultRow = pg.QueryResultRow>(
  client: pg.Client,
  text: string,
  values: readonly unknown[] = [],
): Promise<pg.QueryResult<R>> {
  const config = { text, values: [...values], queryMode: 'extended' } as pg.QueryConfig;
  return client.query<R>(config);
}
