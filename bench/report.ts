/**
 * The one benchmark report: turns what each benchmark module measured into bench/results/latest.json
 * with the keys issue 11 lists, computes every ratio goal of issues 5, 6 and 8 from baselines measured
 * in the same run, and prints a table. A figure that was not measured is `null` with its reason in
 * `missing`; nothing is filled in or carried over from another run.
 */
export interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
}

/** A ratio goal: `value` against `goal` in the direction of `op`; `met` is null when value is null. */
export interface Ratio {
  value: number | null;
  goal: number;
  op: '<=' | '>=';
  met: boolean | null;
  /** What the ratio divides, in words. */
  of: string;
}

/** What the modules returned (each may be absent: the module is missing or failed). */
export interface Measured {
  bridge?: Record<string, Percentiles>;
  broker?: {
    samples: number;
    call_tier1_total: Percentiles;
    call_tier1_hops: Record<'exchange' | 'vault_login' | 'vault_creds' | 'db' | 'revoke', Percentiles>;
    own_overhead: Percentiles;
    own_overhead_share: { p50: number; p99: number };
    hops_alone_total: Percentiles;
    throughput_calls_per_s: { c1: number; c8: number; c32: number };
  };
  audit?: { audit_page_10k: Percentiles; audit_page_1m: Percentiles; audit_append_per_s: number; sqlite_raw_append_per_s: number };
  timeline?: { timeline_render_100: Percentiles; timeline_render_100k: Percentiles };
  core?: { calls: number; rss_mb_after_warmup: number; rss_mb_after_calls: number; peak_rss_mb: number };
  leaks?: { pg_roles: number; vault_leases: number; open_handles: number };
  reliability?: { faults_survived: number; faults_tried?: number; bad_inputs_tried: number; lost_records: number; at?: string };
}

export type Report = Record<string, unknown> & { missing: Record<string, string>; ratios: Record<string, Ratio> };

const ratio = (num: number | null | undefined, den: number | null | undefined, op: Ratio['op'], goal: number, of: string): Ratio => {
  const value = num == null || den == null || !Number.isFinite(num) || !Number.isFinite(den) || den === 0 ? null : Math.round((num / den) * 1000) / 1000;
  return { value, goal, op, met: value === null ? null : op === '<=' ? value <= goal : value >= goal, of };
};

const single = (mb: Percentiles | undefined): number | null => (mb ? mb.p50 : null);

/**
 * Builds the report. `reasons` says why a module's figures are absent (module file missing, or the
 * error it failed with); every key it would have filled is set to null and explained.
 */
export function buildReport(m: Measured, reasons: Record<string, string>, meta: Record<string, unknown>): Report {
  const missing: Record<string, string> = {};
  const need = <T>(key: string, module: string, value: T | undefined): T | null => {
    if (value !== undefined && value !== null) return value;
    missing[key] = reasons[module] ?? `${module} did not report ${key}`;
    return null;
  };
  const b = m.bridge;
  if (m.core && m.core.calls < 10_000) reasons.core = `the core served ${m.core.calls} calls only (BENCH_CORE_CALLS), not 10,000: see core_rss_detail`;
  const peer = b?.peer_mcp_remote_cold_start
    ? { cold_start: b.peer_mcp_remote_cold_start, added_latency: b.peer_mcp_remote_added_latency ?? null, rss_mb: single(b.peer_mcp_remote_rss_mb) }
    : undefined;
  if (b && !b.call_via_native_relay) reasons.native = 'no C compiler (cc) on this machine, so the native relay (bench/fixtures/native-relay.c) was not measured';
  if (b && !peer) reasons.peer = 'mcp-remote is not installed (node_modules/mcp-remote), so the peer bridge was not measured';

  const report: Report = {
    node_bare_start: need('node_bare_start', 'bridge', b?.node_bare_start),
    bridge_cold_start: need('bridge_cold_start', 'bridge', b?.bridge_cold_start),
    call_via_socket: need('call_via_socket', 'bridge', b?.call_via_socket),
    call_via_bridge: need('call_via_bridge', 'bridge', b?.call_via_bridge),
    call_via_pipe_relay: need('call_via_pipe_relay', 'bridge', b?.call_via_pipe_relay),
    call_via_native_relay: need('call_via_native_relay', b ? 'native' : 'bridge', b?.call_via_native_relay),
    relay_overhead: need('relay_overhead', 'bridge', b?.relay_overhead),
    governed_fixture_call_via_socket: need('governed_fixture_call_via_socket', 'bridge', b?.governed_fixture_call_via_socket),
    governed_fixture_call_via_bridge: need('governed_fixture_call_via_bridge', 'bridge', b?.governed_fixture_call_via_bridge),
    tier1_call_via_socket: need('tier1_call_via_socket', 'core', b?.tier1_call_via_socket),
    tier1_call_via_bridge: need('tier1_call_via_bridge', 'core', b?.tier1_call_via_bridge),
    peer_mcp_remote: need('peer_mcp_remote', b ? 'peer' : 'bridge', peer),
    call_tier1_total: need('call_tier1_total', 'broker', m.broker?.call_tier1_total),
    call_tier1_hops: need('call_tier1_hops', 'broker', m.broker?.call_tier1_hops),
    own_overhead: need('own_overhead', 'broker', m.broker?.own_overhead),
    own_overhead_share: need('own_overhead_share', 'broker', m.broker?.own_overhead_share),
    hops_alone_total: need('hops_alone_total', 'broker', m.broker?.hops_alone_total),
    throughput_calls_per_s: need('throughput_calls_per_s', 'broker', m.broker?.throughput_calls_per_s),
    audit_page_10k: need('audit_page_10k', 'audit', m.audit?.audit_page_10k),
    audit_page_1m: need('audit_page_1m', 'audit', m.audit?.audit_page_1m),
    audit_append_per_s: need('audit_append_per_s', 'audit', m.audit?.audit_append_per_s),
    sqlite_raw_append_per_s: need('sqlite_raw_append_per_s', 'audit', m.audit?.sqlite_raw_append_per_s),
    timeline_render_100: need('timeline_render_100', 'timeline', m.timeline?.timeline_render_100),
    timeline_render_100k: need('timeline_render_100k', 'timeline', m.timeline?.timeline_render_100k),
    rss_mb: {
      core_after_10k_calls: need('rss_mb.core_after_10k_calls', 'core', m.core && m.core.calls >= 10_000 ? m.core.rss_mb_after_calls : undefined),
      bridge: need('rss_mb.bridge', 'bridge', single(b?.bridge_peak_rss_mb)),
      node_bare: need('rss_mb.node_bare', 'bridge', single(b?.node_bare_peak_rss_mb)),
    },
    ...(m.core ? { core_rss_detail: m.core } : {}),
    leaks: need('leaks', 'leaks', m.leaks),
    reliability: need('reliability', 'reliability', m.reliability),
    ratios: {},
    missing,
    meta,
  };

  const p50 = (p: Percentiles | null | undefined) => p?.p50;
  report.ratios = {
    // issue 5: the bridge
    bridge_cold_start_vs_node_bare: ratio(p50(b?.bridge_cold_start), p50(b?.node_bare_start), '<=', 1.5, 'bridge spawn → initialize answered by the core, over `node -e 0` (p50)'),
    bridge_cold_start_vs_mcp_remote: ratio(p50(b?.bridge_cold_start), p50(peer?.cold_start), '<=', 0.15, 'bridge cold start over mcp-remote cold start to a local HTTP MCP server (p50)'),
    bridge_call_vs_socket: ratio(p50(b?.call_via_bridge), p50(b?.call_via_socket), '<=', 1.2, 'an echo-tool call through the bridge over the same call straight on the core socket (p50): the relay against a call that does no work'),
    pipe_relay_call_vs_socket: ratio(
      p50(b?.call_via_pipe_relay),
      p50(b?.call_via_socket),
      '<=',
      1.2,
      'the floor under the echo ratio above: the same call through a relay that only pipes bytes after the handshake (bench/fixtures/pipe-relay.ts); no stdio relay Node runs can be below it',
    ),
    native_relay_call_vs_socket: ratio(
      p50(b?.call_via_native_relay),
      p50(b?.call_via_socket),
      '<=',
      1.2,
      'the floor under any stdio relay, in any language: the same call through a C poll loop that copies bytes between two descriptors after the handshake (bench/fixtures/native-relay.c); what is left is the cost of the process hop',
    ),
    bridge_governed_fixture_call_vs_socket: ratio(
      p50(b?.governed_fixture_call_via_bridge),
      p50(b?.governed_fixture_call_via_socket),
      '<=',
      1.2,
      'a fixture tool that waits as long as a governed call (GOVERNED_MS, 20 ms) through the bridge over the same on the core socket, alternating (p50): a stand-in, not a real call',
    ),
    bridge_tier1_call_vs_socket: ratio(
      p50(b?.tier1_call_via_bridge),
      p50(b?.tier1_call_via_socket),
      '<=',
      1.2,
      'a real tier-1 query (the whole core against the lab: exchange, Vault, PostgreSQL, revoke, audit) through the bridge over the same on the core socket, alternating (p50)',
    ),
    relay_overhead_vs_mcp_remote: ratio(p50(b?.relay_overhead), p50(peer?.added_latency ?? undefined), '<=', 0.25, "bridge's added latency over mcp-remote's added latency (p50)"),
    bridge_rss_vs_mcp_remote: ratio(single(b?.bridge_peak_rss_mb), peer?.rss_mb, '<=', 0.25, "bridge peak RSS over mcp-remote's"),
    node_bare_rss_vs_mcp_remote: ratio(
      single(b?.node_bare_peak_rss_mb),
      peer?.rss_mb,
      '<=',
      0.25,
      "the floor under the last one: a bare `node` holding its stdin open and doing nothing, over mcp-remote's peak RSS; no bridge that Node runs can be below it",
    ),
    // issue 6: the broker
    own_overhead_share_p50: ratio(m.broker?.own_overhead_share.p50, 1, '<=', 0.05, "Countersign's own time as a share of a tier-1 call (p50)"),
    own_overhead_share_p99: ratio(m.broker?.own_overhead_share.p99, 1, '<=', 0.05, "Countersign's own time as a share of a tier-1 call (p99)"),
    total_vs_hops_alone: ratio(p50(m.broker?.call_tier1_total), p50(m.broker?.hops_alone_total), '<=', 1.1, 'tier-1 call through the broker over the same hops run alone (p50)'),
    // issue 8: the audit timeline
    audit_page_1m_vs_10k: ratio(p50(m.audit?.audit_page_1m), p50(m.audit?.audit_page_10k), '<=', 2, 'newest filtered page at 1,000,000 records over the same at 10,000 (p50)'),
    audit_append_vs_sqlite_raw: ratio(m.audit?.audit_append_per_s, m.audit?.sqlite_raw_append_per_s, '>=', 0.5, 'durable audit appends per second over a bare node:sqlite insert loop'),
    timeline_render_100k_vs_100: ratio(p50(m.timeline?.timeline_render_100k), p50(m.timeline?.timeline_render_100), '<=', 2, 'timeline first render with 100k records over 100 records in Chromium (p50)'),
  };
  return report;
}

/** A plain-text table of every figure and ratio, for the terminal. */
export function formatTable(report: Report): string {
  const rows: Array<[string, string]> = [];
  const fmt = (n: unknown): string => (typeof n === 'number' ? (Number.isInteger(n) ? String(n) : n.toFixed(n < 10 ? 3 : 1)) : 'null');
  const walk = (key: string, v: unknown): void => {
    if (v === null || v === undefined) rows.push([key, `null (${report.missing[key] ?? 'not measured'})`]);
    else if (typeof v === 'number') rows.push([key, fmt(v)]);
    else if (typeof v === 'object' && 'p50' in (v as object) && 'p99' in (v as object)) {
      const p = v as Percentiles;
      rows.push([key, `p50 ${fmt(p.p50)}  ${'p95' in p ? `p95 ${fmt(p.p95)}  ` : ''}p99 ${fmt(p.p99)}`]);
    } else if (typeof v === 'object') for (const [k, x] of Object.entries(v as Record<string, unknown>)) walk(`${key}.${k}`, x);
  };
  for (const [k, v] of Object.entries(report)) if (!['ratios', 'missing', 'meta', 'core_rss_detail'].includes(k)) walk(k, v);
  for (const [k, r] of Object.entries(report.ratios)) {
    rows.push([`ratio ${k}`, `${fmt(r.value)} (goal ${r.op} ${r.goal}) ${r.met === null ? 'not measured' : r.met ? 'met' : 'NOT met'}`]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join('\n');
}
