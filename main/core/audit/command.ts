import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import type { Writable } from 'node:stream';
import type { JWK } from 'jose';
import { OUTCOMES, RECORD_KINDS } from '../../../common/audit-record.ts';
import type { AuditFilter } from '../../../common/contract.ts';
import { AppError } from '../../../common/errors.ts';
import { resolvePaths } from '../../../common/paths.ts';
import { exportStream, writeExportFile } from './export.ts';
import { AuditStore, DB_FILE } from './store.ts';

const USAGE = `Usage:
  countersign audit export --format jsonl|csv [--out FILE] [--from ISO] [--to ISO] [--outcome a,b]
                           [--kind a,b] [--tool NAME] [--user SUB|NAME|EMAIL] [--search TEXT] [--data-dir DIR]
  countersign audit verify [--anchors FILE] [--public-key FILE] [--json] [--data-dir DIR]

verify exits 0 when the chain is intact, 1 when it is not (naming the first record affected).
--anchors is a file of checkpoints kept off this machine (one compact JWS a line); only they can show
that the chain was fully re-hashed or cut short. --public-key is the install's public JWK as the
anchor's holder knows it.`;

export interface AuditCommandIo {
  stdout: Writable;
  stderr: Writable;
  env: Readonly<Record<string, string | undefined>>;
}

/** `countersign audit export|verify`. Opens the store read-only, so it runs beside the app. Returns the exit code. */
export async function runAuditCommand(
  argv: string[],
  io: AuditCommandIo = { stdout: process.stdout, stderr: process.stderr, env: process.env },
): Promise<number> {
  const [sub, ...rest] = argv;
  if (!sub || sub === '--help' || sub === '-h' || (sub !== 'export' && sub !== 'verify')) {
    (sub && sub !== '--help' && sub !== '-h' ? io.stderr : io.stdout).write(USAGE + '\n');
    return sub && sub !== '--help' && sub !== '-h' ? 2 : 0;
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: rest,
      strict: true,
      options: {
        format: { type: 'string' },
        out: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        outcome: { type: 'string' },
        kind: { type: 'string' },
        tool: { type: 'string' },
        user: { type: 'string' },
        search: { type: 'string' },
        anchors: { type: 'string' },
        'public-key': { type: 'string' },
        json: { type: 'boolean' },
        'data-dir': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch {
    io.stderr.write(USAGE + '\n');
    return 2;
  }
  if (values.help) {
    io.stdout.write(USAGE + '\n');
    return 0;
  }
  const dataDir = (values['data-dir'] as string | undefined) ?? resolvePaths({ platform: process.platform, env: io.env, home: homedir() }).dataDir;
  if (!existsSync(join(dataDir, DB_FILE))) {
    io.stderr.write(`No audit store in ${dataDir}.\n`);
    return 2;
  }
  let store: AuditStore | undefined;
  try {
    store = await AuditStore.open({ dataDir, readOnly: true });
    if (sub === 'export') return await runExport(store, values, io);
    return await runVerify(store, values, io);
  } catch (e) {
    const err = AppError.from(e, 'AUDIT_FAILED', 'The audit command failed.');
    io.stderr.write(`${err.code}: ${err.message}\n`);
    return err.code === 'INPUT_INVALID' || err.code === 'CONFIG_INVALID' ? 2 : 1;
  } finally {
    await store?.close();
  }
}

async function runExport(store: AuditStore, v: Record<string, string | boolean | undefined>, io: AuditCommandIo): Promise<number> {
  const format = v.format ?? 'jsonl';
  if (format !== 'jsonl' && format !== 'csv') throw new AppError('INPUT_INVALID', '--format must be jsonl or csv.');
  const list = <T extends string>(s: unknown, allowed: readonly T[], name: string): T[] | undefined => {
    if (typeof s !== 'string') return undefined;
    const items = s.split(',').map((x) => x.trim());
    for (const i of items) if (!(allowed as readonly string[]).includes(i)) throw new AppError('INPUT_INVALID', `--${name} takes ${allowed.join(', ')}.`);
    return items as T[];
  };
  const filter: AuditFilter = {};
  const outcome = list(v.outcome, OUTCOMES, 'outcome');
  const kind = list(v.kind, RECORD_KINDS, 'kind');
  if (outcome) filter.outcome = outcome;
  if (kind) filter.kind = kind;
  for (const key of ['from', 'to', 'tool', 'user', 'search'] as const) if (typeof v[key] === 'string') filter[key] = v[key];
  if (typeof v.out === 'string') {
    const { records } = await writeExportFile(store, format, filter, v.out);
    io.stderr.write(`Wrote ${records} record(s) to ${v.out}\n`);
  } else await pipeline(exportStream(store, format, filter), io.stdout, { end: false });
  return 0;
}

async function runVerify(store: AuditStore, v: Record<string, string | boolean | undefined>, io: AuditCommandIo): Promise<number> {
  let anchors: string[] = [];
  let publicKey: JWK | undefined;
  try {
    if (typeof v.anchors === 'string') anchors = readFileSync(v.anchors, 'utf8').split(/\s+/).filter(Boolean);
    if (typeof v['public-key'] === 'string') publicKey = JSON.parse(readFileSync(v['public-key'], 'utf8')) as JWK;
  } catch (e) {
    throw AppError.from(e, 'INPUT_INVALID', 'The anchors or public key file could not be read.');
  }
  const result = await store.verify({ anchors, ...(publicKey ? { publicKey } : {}) });
  if (v.json) io.stdout.write(JSON.stringify(result) + '\n');
  else if (result.ok) {
    io.stdout.write(
      `Intact: ${result.checked} records through ${result.head?.seq ?? 0}; ${result.checkpoints_checked} local checkpoints and ${result.anchors_checked} anchors agree.` +
        (result.anchored ? '\n' : '\nWithout an anchor kept off this machine, a fully re-hashed or truncated chain cannot be told apart from an intact one.\n'),
    );
  } else io.stdout.write(`Broken (${result.firstBad!.kind}) at record ${result.firstBad!.seq}: ${result.firstBad!.reason}\n`);
  return result.ok ? 0 : 1;
}
