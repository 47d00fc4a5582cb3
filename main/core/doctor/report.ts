/** The doctor's report as sentences, one party after another, for a terminal. */
import type { DoctorReport, FindingStatus, Party } from './types.ts';

/** The report as sentences, one party after another, for a terminal. */
export function formatReport(report: DoctorReport): string {
  const mark: Record<FindingStatus, string> = { ok: 'ok  ', warn: 'warn', fail: 'FAIL', skip: 'skip' };
  const lines: string[] = [];
  let party: Party | undefined;
  for (const f of report.findings) {
    if (f.party !== party) {
      party = f.party;
      lines.push('', PARTY_TITLE[party]);
    }
    lines.push(`  [${mark[f.status]}] ${f.says}`);
    if (f.fix) lines.push(`         Fix: ${f.fix}`);
    if (f.claims) lines.push(`         Claims (the token itself is not shown): ${JSON.stringify(f.claims)}`);
  }
  lines.push(
    '',
    report.ok
      ? 'A governed call can work: every check passed and a credential went the whole way (exchange, Vault, target, revoke).'
      : 'A governed call cannot be shown to work yet: fix what is marked FAIL above (and sign in, if it was skipped).',
  );
  return lines.join('\n').trimStart() + '\n';
}

const PARTY_TITLE: Record<Party, string> = {
  idp: 'Identity provider',
  delegation: 'Delegation profile',
  exchange: 'Token exchange (one per credential)',
  vault: 'Vault',
  database: 'Database',
  upstream: 'Upstream MCP servers',
};
