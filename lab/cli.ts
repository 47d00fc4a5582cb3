/**
 * `npm run lab`: starts the local identity lab and prints every endpoint and the demo users (or, with
 * `--json`, one JSON line a script can read), then runs until SIGINT/SIGTERM and stops cleanly.
 * The administrator token and the demo passwords are printed on purpose: this is a local lab, as
 * `vault server -dev` prints its root token. `--part idp|vault` runs one part alone (lab/parts.ts).
 */
import { ACR_MFA, LAB_IDP_PROFILES, LAB_ONE_TIME_CODE, type LabIdpProfile } from './idp/index.ts';
import { startLab } from './index.ts';
import type { Lab } from './index.ts';

// `--part idp|vault`: that part alone, in this process (lab/parts.ts starts the lab this way for fault tests).
const part = process.argv[process.argv.indexOf('--part') + 1];
if (process.argv.includes('--part')) {
  if (part !== 'idp' && part !== 'vault') {
    process.stderr.write('lab: --part takes idp or vault\n');
    process.exit(2);
  }
  const { runPart } = await import('./parts.ts');
  await runPart(part);
  await new Promise(() => {}); // runs until SIGTERM
}

const json = process.argv.includes('--json');
const verbose = process.argv.includes('--verbose');
/** `--idp-profile keycloak|okta|verify`: the lab IdP answers token exchanges as that vendor documents. */
const profileAt = process.argv.indexOf('--idp-profile');
const idpProfile = (profileAt >= 0 ? process.argv[profileAt + 1] : 'lab') as LabIdpProfile;
if (!LAB_IDP_PROFILES.includes(idpProfile)) {
  process.stderr.write(`lab: --idp-profile must be one of ${LAB_IDP_PROFILES.join(', ')}\n`);
  process.exit(2);
}
const log = (line: string): void => {
  if (verbose) process.stderr.write(`${line}\n`);
};

function describe(lab: Lab, ms: number): string {
  const users = lab.users.map((u) => `    ${u.username.padEnd(6)} / ${u.password.padEnd(14)} ${u.name} <${u.email}>  (${u.role})`).join('\n');
  return `
  Countersign lab — for development and demos only (ready in ${ms} ms)

  IdP issuer            ${lab.issuer}
    discovery           ${lab.issuer}/.well-known/openid-configuration
    token exchange as   ${lab.idp.profile.title} (Countersign: idp.delegation = ${lab.idp.profile.delegation})
    native client       ${lab.idp.nativeClientId} (PKCE S256, loopback redirect http://127.0.0.1:<port>/callback)
    one-time code       ${LAB_ONE_TIME_CODE} (for acr ${ACR_MFA})
  Vault                 ${lab.vaultAddr}
    admin token         ${lab.vaultToken}
    audit log           ${lab.vaultAuditLogPath}
  PostgreSQL            ${lab.postgresUrl}
    admin               ${lab.postgresAdminUrl}
    server log          ${lab.pg.logFile}
  Upstream MCP          ${lab.upstreamMcpUrl}
  API-key upstream MCP  ${lab.apiKeyUpstreamUrl}

  Demo users (username / password):
${users}

  export VAULT_ADDR=${lab.vaultAddr} VAULT_TOKEN=${lab.vaultToken}
  Press Ctrl+C to stop; everything the lab started is removed.
`;
}

// Signal handlers go in before anything is printed: a script that reads the ready line and stops the
// lab at once must find them installed, or the default action kills the process and leaves the lab's
// children and directories behind.
let lab: Lab | undefined;
let stopping = false;
const shutdown = (signal: string): void => {
  if (stopping) return;
  stopping = true;
  log(`lab: ${signal}, stopping`);
  if (!lab) return; // still starting: stopped as soon as it is up
  lab.stop().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));

const t0 = Date.now();
try {
  lab = await startLab({ log, idpProfile });
  if (stopping) {
    await lab.stop();
    process.exit(0);
  }
} catch (e) {
  process.stderr.write(`lab: failed to start (${(e as Error).message})\n`);
  process.exit(1);
}
const ms = Date.now() - t0;

if (json) {
  process.stdout.write(
    `${JSON.stringify({
      issuer: lab.issuer,
      vault_addr: lab.vaultAddr,
      vault_token: lab.vaultToken,
      vault_audit_log: lab.vaultAuditLogPath,
      postgres_url: lab.postgresUrl,
      postgres_admin_url: lab.postgresAdminUrl,
      postgres_log: lab.pg.logFile,
      upstream_mcp_url: lab.upstreamMcpUrl,
      api_key_upstream_url: lab.apiKeyUpstreamUrl,
      native_client_id: lab.idp.nativeClientId,
      idp_profile: lab.idp.profile.name,
      delegation: lab.idp.profile.delegation,
      vault_audience: lab.idp.vaultAudience,
      users: lab.users.map((u) => ({ username: u.username, password: u.password, sub: u.sub, name: u.name, email: u.email, role: u.role })),
      ready_ms: ms,
    })}\n`,
  );
} else {
  process.stdout.write(describe(lab, ms));
}

