import { describe, expect, it } from 'vitest';
import { parseAppConfig } from '../../../main/core/config/config.ts';

const base = {
  idp: { issuer: 'https://idp.example', clientId: 'countersign-desktop' },
  policyFile: 'policy.jsonc',
};
const withVault = (vault: Record<string, unknown>) => parseAppConfig({ ...base, vault });

describe('the Vault address in the configuration', () => {
  it('takes https anywhere, with the insecure switch off by default', () => {
    expect(withVault({ address: 'https://vault.example:8200' }).vault).toMatchObject({ address: 'https://vault.example:8200', allowInsecureHttpForLoopbackOnly: false });
  });

  it('refuses plain http off loopback, even with the switch', () => {
    expect(() => withVault({ address: 'http://vault.example:8200' })).toThrow(/vault\.address: must use https/);
    expect(() => withVault({ address: 'http://vault.example:8200', allowInsecureHttpForLoopbackOnly: true })).toThrow(/vault\.address: may use plain http only on a loopback address/);
    expect(() => withVault({ address: 'http://10.0.0.8:8200', allowInsecureHttpForLoopbackOnly: true })).toThrow(/vault\.address/);
    // A name that starts like loopback is not loopback.
    expect(() => withVault({ address: 'http://127.0.0.1.example.com:8200', allowInsecureHttpForLoopbackOnly: true })).toThrow(/vault\.address/);
  });

  it('refuses plain http on loopback unless the configuration says so explicitly', () => {
    expect(() => withVault({ address: 'http://127.0.0.1:8200' })).toThrow(/vault\.address: must use https \(plain http is allowed only for a loopback Vault with allowInsecureHttpForLoopbackOnly\)/);
    expect(withVault({ address: 'http://127.0.0.1:8200', allowInsecureHttpForLoopbackOnly: true }).vault.address).toBe('http://127.0.0.1:8200');
    expect(withVault({ address: 'http://[::1]:8200', allowInsecureHttpForLoopbackOnly: true }).vault.address).toBe('http://[::1]:8200');
  });

  it('refuses any other scheme', () => {
    expect(() => withVault({ address: 'ftp://vault.example' })).toThrow(/vault\.address/);
    expect(() => withVault({ address: 'file:///tmp/vault', allowInsecureHttpForLoopbackOnly: true })).toThrow(/vault\.address/);
  });
});
