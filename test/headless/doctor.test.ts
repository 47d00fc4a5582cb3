/**
 * `countersign doctor` against the lab in each profile and against misconfigured labs, run in process
 * as the command runs (configuration file, a throwaway sign-in in the browser, which Chromium plays,
 * the report on stdout). Each misconfiguration is named with its fix, and the exit code is 0 only when
 * a governed call can work.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_POLICY_FILE, labAppConfig } from '../../lab/app-config.ts';
import { startLab, type Lab } from '../../lab/index.ts';
import type { DoctorReport, Finding } from '../../main/core/doctor/doctor.ts';
import { installExchangeKey } from '../../main/core/idp/exchange-client.ts';
import type { SecretStore } from '../../main/core/ports.ts';
import { MemorySecretStore } from '../../main/core/secrets/memory-store.ts';
import { runDoctorCommand } from '../../main/headless/doctor.ts';
import { launchBrowser, logInOnLabPage, type LabBrowser } from '../helpers/browser.ts';

let browser: LabBrowser;
let dir: string;

beforeAll(async () => {
  [browser, dir] = await Promise.all([launchBrowser(), mkdtemp(join(tmpdir(), 'countersign-doctor-'))]);
});
afterAll(async () => {
  await browser?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function doctor(
  config: unknown,
  args: string[] = ['--json'],
  secrets: SecretStore = new MemorySecretStore('the test keychain'),
): Promise<{ code: number; out: string; err: string }> {
  const file = join(dir, `config-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify(config));
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await runDoctorCommand(['--config', file, ...args], {
    stdout,
    stderr,
    env: process.env,
    openExternal: (url) => logInOnLabPage(browser, url),
    secrets,
  });
  return { code, out, err };
}

const find = (r: DoctorReport, party: Finding['party'], check: RegExp | string): Finding | undefined =>
  r.findings.find(
    (f) => f.party === party && (typeof check === 'string' ? f.check === check : check.test(f.check)),
  );

/** What Okta's administrator does: the lab's service app holds this install's exchange key. */
async function serviceAppWithKeyOf(lab: Lab, secrets: SecretStore): Promise<void> {
  const key = await installExchangeKey(secrets, lab.issuer);
  await lab.idp.registerServiceApp({ clientId: lab.idp.exchangeClientId!, jwks: { keys: [key.publicJwk] } });
}

describe.each(['keycloak', 'okta', 'verify'] as const)('the doctor against the lab as %s', (profile) => {
  let lab: Lab;
  const secrets = new MemorySecretStore('the test keychain');
  beforeAll(async () => {
    lab = await startLab({ idpProfile: profile });
    if (lab.idp.exchangeClientId) await serviceAppWithKeyOf(lab, secrets);
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
  }, 60_000);

  it('finds the profile that fits, exchanges for each credential, shows the claims without the token, and exits 0', async () => {
    const { code, out } = await doctor(labAppConfig(lab), ['--json'], secrets);
    const report = JSON.parse(out) as DoctorReport;
    const expected = profile === 'verify' ? 'rar' : 'scopes';
    expect(report.delegation).toEqual({ configured: expected, fits: expected });
    expect(report.findings.filter((f) => f.status === 'fail')).toEqual([]);
    expect(code).toBe(0);
    expect(report.ok).toBe(true);
    for (const check of ['discovery', 'token exchange', 'DPoP', 'PAR', 'registration', 'device flow'])
      expect(find(report, 'idp', check)?.status, check).toBe('ok');
    const read = find(report, 'exchange', /^database reads/)!;
    expect(read.status).toBe('ok');
    expect(read.claims).toMatchObject({ vault_role: 'clinic-read', aud: 'countersign-vault' });
    if (profile === 'keycloak')
      expect(read.claims).toMatchObject({ scope: 'vault:clinic-read', azp: expect.any(String) });
    if (profile === 'okta')
      expect(read.claims).toMatchObject({ scp: ['vault:clinic-read'], cid: lab.idp.exchangeClientId });
    if (profile === 'okta')
      expect(find(report, 'exchange', 'exchange client')).toMatchObject({
        status: 'ok',
        says: expect.stringContaining(`Token exchanges authenticate as ${lab.idp.exchangeClientId} with this install's exchange key`),
      });
    if (profile === 'verify')
      expect(read.claims).toMatchObject({
        act: { sub: expect.any(String) },
        authorization_details: [expect.objectContaining({ type: 'postgres' })],
      });
    expect(find(report, 'database', 'connect as clinic-read')?.status).toBe('ok');
    // Under scopes every credential is asked for; under rar writes and sensitive reads are left to the first real one.
    expect(find(report, 'exchange', /^database writes/)?.status).toBe(expected === 'scopes' ? 'ok' : 'skip');
    expect(find(report, 'vault', /^secret /)?.status).toBe('ok');
    // The claims, never a token: nothing in the output is a JWT.
    expect(out).not.toMatch(/eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+/);
    expect(await settledLeases(lab)).toBe(0);
  });
});

async function settledLeases(lab: Lab): Promise<number> {
  for (let i = 0; i < 40 && lab.vault.leases() > 0; i += 1) await new Promise((r) => setTimeout(r, 50));
  return lab.vault.leases();
}

describe('the doctor against a misconfigured lab', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await startLab({ idpProfile: 'keycloak' });
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
  }, 60_000);

  it('says Vault is sealed and how to fix it, and exits 1', async () => {
    lab.vault.seal();
    try {
      const { code, out } = await doctor(labAppConfig(lab));
      const report = JSON.parse(out) as DoctorReport;
      const health = find(report, 'vault', 'health')!;
      expect(health).toMatchObject({
        status: 'fail',
        says: expect.stringMatching(/is sealed/),
        fix: expect.stringMatching(/unseal/),
      });
      expect(code).toBe(1);
    } finally {
      lab.vault.unseal();
    }
  });

  it('names a role Vault does not have, with the command that creates it, and exits 1', async () => {
    const policy = (await readFile(DEMO_POLICY_FILE, 'utf8')).replace(
      '"read": "clinic-read"',
      '"read": "clinic-reader"',
    );
    const policyFile = join(dir, 'unknown-role.policy.jsonc');
    await writeFile(policyFile, policy);
    const { code, out } = await doctor(labAppConfig(lab, { policyFile }));
    const report = JSON.parse(out) as DoctorReport;
    expect(find(report, 'vault', 'role clinic-reader')).toMatchObject({
      status: 'fail',
      says: 'Vault has no role clinic-reader at auth/jwt, which database reads (clinic-reader) needs.',
      fix: expect.stringMatching(/^Create it \(vault write auth\/jwt\/role\/clinic-reader/),
    });
    expect(code).toBe(1);
  });

  it('prints sentences for a person: each party, what is wrong, what to do', async () => {
    lab.vault.seal();
    try {
      const { code, out } = await doctor(labAppConfig(lab), []);
      expect(out).toMatch(
        /^Identity provider\n {2}\[ok {2}\] http:\/\/127\.0\.0\.1:\d+ publishes its OpenID configuration\./,
      );
      expect(out).toMatch(
        /\n {2}\[FAIL\] Vault at http:\/\/127\.0\.0\.1:\d+ is sealed: it cannot log anyone in or mint credentials\.\n {9}Fix: Ask its operator to unseal it/,
      );
      expect(out).toMatch(/A governed call cannot be shown to work yet/);
      expect(code).toBe(1);
    } finally {
      lab.vault.unseal();
    }
  });

  it('without a sign-in, says the exchange was not tried and does not claim a call can work', async () => {
    const { code, out } = await doctor(labAppConfig(lab), ['--json', '--no-sign-in']);
    const report = JSON.parse(out) as DoctorReport;
    expect(find(report, 'exchange', 'sign-in')).toMatchObject({ status: 'skip' });
    expect(report.ok).toBe(false);
    expect(code).toBe(1);
  });
});

describe('the doctor against the lab as Okta, set up wrong', () => {
  let lab: Lab;
  const secrets = new MemorySecretStore('the test keychain');
  beforeAll(async () => {
    lab = await startLab({ idpProfile: 'okta' });
    await serviceAppWithKeyOf(lab, secrets);
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
  }, 60_000);

  it("says an Okta OBO of 5 minutes is refused without idp.allowLongLivedOboUpToSeconds, naming the setting, and exits 1", async () => {
    const config = labAppConfig(lab);
    const { allowLongLivedOboUpToSeconds: _allowed, ...idp } = config.idp;
    const { code, out } = await doctor({ ...config, idp }, ['--json'], secrets);
    const report = JSON.parse(out) as DoctorReport;
    expect(find(report, 'exchange', /^database reads/)).toMatchObject({
      status: 'fail',
      says: expect.stringMatching(/lives longer than 60 s \(300 s\).*idp\.allowLongLivedOboUpToSeconds.*\[OBO_INVALID\]$/),
    });
    expect(code).toBe(1);
    expect(await settledLeases(lab)).toBe(0);
  });

  it("shows this install's exchange key when Okta's service app does not hold it, and exits 1", async () => {
    const elsewhere = new MemorySecretStore('another install');
    const { code, out } = await doctor(labAppConfig(lab), ['--json'], elsewhere);
    const report = JSON.parse(out) as DoctorReport;
    const key = await installExchangeKey(elsewhere, lab.issuer);
    expect(find(report, 'exchange', 'exchange client')?.fix).toContain(JSON.stringify(key.publicJwk));
    expect(JSON.stringify(key.publicJwk)).not.toContain('"d"');
    expect(find(report, 'exchange', /^database reads/)).toMatchObject({
      says: expect.stringMatching(/refused the token-exchange client 0oacountersignexchange \(invalid_client\): add this install's exchange key/),
    });
    expect(code).toBe(1);
  });
});

describe('the doctor against an identity provider without token exchange', () => {
  let lab: Lab;
  beforeAll(async () => {
    lab = await startLab({ idpTokenExchange: false });
  }, 60_000);
  afterAll(async () => {
    await lab?.stop();
  }, 60_000);

  it('says token exchange is off, names where to turn it on, and exits 1', async () => {
    const { code, out } = await doctor(labAppConfig(lab));
    const report = JSON.parse(out) as DoctorReport;
    expect(find(report, 'idp', 'token exchange')).toMatchObject({
      status: 'fail',
      says: expect.stringMatching(/does not offer token exchange \(RFC 8693\)/),
      fix: expect.stringMatching(/Keycloak 26\.2\+, the client's Standard Token Exchange switch/),
    });
    expect(find(report, 'exchange', /^database reads/)?.status).toMatch(/fail|warn/);
    expect(code).toBe(1);
  });
});
