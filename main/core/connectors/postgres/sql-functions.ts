/**
 * PostgreSQL's own functions, sorted by what calling them does. A statement may call a function only
 * when Countersign knows it: `SAFE_FUNCTIONS` have no side effect and read no table (math, text,
 * date/time, aggregates, window functions, json(b) accessors, arrays); `EFFECT_FUNCTIONS` write,
 * lock, signal other sessions, change settings, touch files or large objects, advance sequences,
 * or read tables named in a string, and are never part of a read. Everything else, user-defined
 * functions and schema-qualified look-alikes (`public.lower`) included, is unknown and refused unless
 * the policy lists it. Names are pg_catalog's; the list is deliberately short of the whole catalogue.
 */

/** What a function with effects does, as the refusal and the RAR say it. */
export type FunctionEffect =
  | 'writes data'
  | 'advances a sequence'
  | 'takes an advisory lock'
  | 'signals other sessions'
  | 'changes settings'
  | 'reads or writes files'
  | 'creates or changes large objects'
  | 'sends a notification'
  | 'reads tables named in a string'
  | 'reaches another database'
  | 'changes the server';

const words = (text: string): string[] => text.split(/\s+/).filter(Boolean);

const SAFE = words(`
  abs cbrt ceil ceiling degrees div exp factorial floor gcd lcm ln log log10 mod pi power radians round
  scale sign sqrt trunc width_bucket min_scale trim_scale random_normal
  acos acosd asin asind atan atand atan2 atan2d cos cosd cot cotd sin sind tan tand sinh cosh tanh asinh acosh atanh
  greatest least numeric int2 int4 int8 float4 float8 text varchar bpchar bool date timestamp timestamptz interval
  ascii bit_length btrim char_length character_length chr concat concat_ws convert_from convert_to decode encode
  format initcap left length lower lpad ltrim md5 normalize octet_length overlay position quote_ident quote_literal
  quote_nullable regexp_count regexp_instr regexp_like regexp_match regexp_matches regexp_replace regexp_split_to_array
  regexp_split_to_table regexp_substr repeat replace reverse right rpad rtrim split_part starts_with string_to_array
  string_to_table strpos substr substring to_ascii to_hex translate unistr upper casefold
  sha224 sha256 sha384 sha512 crc32 crc32c get_bit get_byte set_bit set_byte bit_count
  age clock_timestamp current_date date_add date_bin date_part date_subtract date_trunc extract isfinite justify_days
  justify_hours justify_interval localtime localtimestamp make_date make_interval make_time make_timestamp
  make_timestamptz now statement_timestamp timeofday transaction_timestamp to_char to_date to_number to_timestamp
  timezone overlaps similar_to_escape similar_escape
  array_agg avg bit_and bit_or bit_xor bool_and bool_or count every json_agg jsonb_agg json_object_agg jsonb_object_agg
  max min string_agg sum corr covar_pop covar_samp regr_avgx regr_avgy regr_count regr_intercept regr_r2 regr_slope
  regr_sxx regr_sxy regr_syy stddev stddev_pop stddev_samp variance var_pop var_samp mode percentile_cont
  percentile_disc any_value
  row_number rank dense_rank percent_rank cume_dist ntile lag lead first_value last_value nth_value
  array_append array_cat array_dims array_fill array_length array_lower array_ndims array_position array_positions
  array_prepend array_remove array_replace array_to_string array_upper cardinality trim_array unnest generate_series
  generate_subscripts array_reverse array_sample array_shuffle array_sort
  to_json to_jsonb array_to_json row_to_json json_build_array jsonb_build_array json_build_object jsonb_build_object
  json_object jsonb_object json_array_length jsonb_array_length json_each jsonb_each json_each_text jsonb_each_text
  json_extract_path jsonb_extract_path json_extract_path_text jsonb_extract_path_text json_object_keys jsonb_object_keys
  json_array_elements jsonb_array_elements json_array_elements_text jsonb_array_elements_text json_typeof jsonb_typeof
  json_strip_nulls jsonb_strip_nulls jsonb_pretty jsonb_set jsonb_set_lax jsonb_insert jsonb_path_exists jsonb_path_match
  jsonb_path_query jsonb_path_query_array jsonb_path_query_first json_populate_record jsonb_populate_record
  json_to_record jsonb_to_record json_to_recordset jsonb_to_recordset json_populate_recordset jsonb_populate_recordset
  coalesce nullif num_nonnulls num_nulls gen_random_uuid uuidv4 uuidv7 random
  lower_inc upper_inc lower_inf upper_inf isempty range_merge int4range int8range numrange tsrange tstzrange daterange
  host hostmask masklen netmask network broadcast family abbrev inet_same_family
  to_tsvector to_tsquery plainto_tsquery phraseto_tsquery websearch_to_tsquery ts_rank ts_rank_cd ts_headline
  current_setting pg_typeof pg_column_size version current_database current_schema current_user session_user
  has_table_privilege has_column_privilege has_schema_privilege pg_has_role format_type
  pg_sleep pg_sleep_for pg_sleep_until
`);

/**
 * pg_catalog functions with no side effect and no access to tables (beyond the catalog's own rows).
 * pg_sleep is here: it holds only the call's own session, and the statement time-out ends it.
 */
const SAFE_FUNCTIONS: ReadonlySet<string> = new Set(SAFE);

const EFFECTS: Array<[FunctionEffect, string]> = [
  ['advances a sequence', 'nextval setval'],
  ['takes an advisory lock', `pg_advisory_lock pg_advisory_lock_shared pg_advisory_unlock pg_advisory_unlock_shared
    pg_advisory_unlock_all pg_advisory_xact_lock pg_advisory_xact_lock_shared pg_try_advisory_lock
    pg_try_advisory_lock_shared pg_try_advisory_xact_lock pg_try_advisory_xact_lock_shared`],
  ['signals other sessions', 'pg_terminate_backend pg_cancel_backend pg_signal_backend pg_log_backend_memory_contexts'],
  ['changes settings', 'set_config pg_reload_conf setseed'],
  ['reads or writes files', `pg_read_file pg_read_binary_file pg_ls_dir pg_stat_file pg_ls_logdir pg_ls_waldir
    pg_ls_tmpdir pg_ls_archive_statusdir pg_ls_logicalsnapdir pg_ls_logicalmapdir pg_ls_replslotdir pg_file_write
    pg_file_rename pg_file_unlink pg_logdir_ls pg_current_logfile pg_rotate_logfile`],
  ['creates or changes large objects', `lo_import lo_export lo_create lo_creat lo_unlink lo_open lo_close lo_put lo_get
    lo_from_bytea lo_truncate lo_truncate64 lo_lseek lo_lseek64 lo_tell lo_tell64 lowrite loread`],
  ['sends a notification', 'pg_notify'],
  ['reads tables named in a string', `query_to_xml query_to_xmlschema query_to_xml_and_xmlschema table_to_xml
    table_to_xmlschema table_to_xml_and_xmlschema cursor_to_xml cursor_to_xmlschema schema_to_xml schema_to_xmlschema
    schema_to_xml_and_xmlschema database_to_xml database_to_xmlschema database_to_xml_and_xmlschema ts_stat ts_rewrite
    xpath_table`],
  ['reaches another database', `dblink dblink_exec dblink_open dblink_fetch dblink_close dblink_connect dblink_connect_u
    dblink_disconnect dblink_send_query dblink_get_result dblink_get_connections dblink_is_busy dblink_cancel_query
    dblink_error_message dblink_get_notify dblink_build_sql_insert dblink_build_sql_update dblink_build_sql_delete`],
  ['changes the server', `pg_switch_wal pg_create_restore_point pg_promote pg_backup_start pg_backup_stop
    pg_start_backup pg_stop_backup pg_stat_reset pg_stat_reset_shared pg_stat_reset_single_table_counters
    pg_stat_reset_single_function_counters pg_stat_reset_slru pg_stat_reset_replication_slot pg_stat_reset_subscription_stats
    pg_create_physical_replication_slot pg_create_logical_replication_slot pg_drop_replication_slot
    pg_replication_origin_create pg_replication_origin_drop pg_import_system_collations pg_wal_replay_pause
    pg_wal_replay_resume txid_current pg_current_xact_id pg_logical_emit_message`],
];

/** pg_catalog functions with effects, each with what it does. */
const EFFECT_FUNCTIONS: ReadonlyMap<string, FunctionEffect> = new Map(
  EFFECTS.flatMap(([effect, names]) => words(names).map((n): [string, FunctionEffect] => [n, effect])),
);

/**
 * Type names a cast may name without a schema: pg_catalog's, which PostgreSQL finds before any schema
 * on the search path (a cast to a user-defined type could run its input function or a domain's checks).
 */
export const BUILTIN_TYPES: ReadonlySet<string> = new Set(
  words(`bool boolean int2 smallint int4 int integer int8 bigint float4 real float8 float double numeric decimal
    text varchar bpchar char character name uuid bytea date time timetz timestamp timestamptz interval json jsonb
    inet cidr macaddr money bit varbit oid regclass regtype regproc regprocedure regnamespace regrole regconfig
    tsvector tsquery int4range int8range numrange tsrange tstzrange daterange xml record`),
);

/** What a qualified function name is, before any policy: safe, effectful (with what), or unknown. */
export function builtinFunction(qualified: string): { kind: 'safe' } | { kind: 'effect'; effect: FunctionEffect } | { kind: 'unknown' } {
  const prefix = 'pg_catalog.';
  if (!qualified.startsWith(prefix)) return { kind: 'unknown' };
  const name = qualified.slice(prefix.length);
  const effect = EFFECT_FUNCTIONS.get(name);
  if (effect) return { kind: 'effect', effect };
  if (SAFE_FUNCTIONS.has(name)) return { kind: 'safe' };
  return { kind: 'unknown' };
}
