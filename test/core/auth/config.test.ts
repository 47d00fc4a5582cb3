import { describe, expect, it } from 'vitest';
import { AppError } from '../../../common/errors.ts';
import { parseIdpConfig } from '../../../main/core/auth/config.ts';

const good = { issuer: 'https://idp.example.com', clientId: 'countersign-desktop' };

function errorOf(input: unknown): AppError {
  try {
    parseIdpConfig(input);
  } catch (error) {
    if (AppError.is(error, 'CONFIG_INVALID')) return error;
    throw error;
  }
  throw new Error('accepted an invalid configuration');
}

describe('IdP configuration', () => {
  it('fills safe defaults: sign-in scopes, rar delegation, no insecure http, static client, DPoP when offered', () => {
    expect(parseIdpConfig(good)).toEqual({
      ...good,
      scopes: ['openid', 'profile', 'email', 'offline_access'],
      delegation: 'rar',
      delegationScopePrefix: 'vault:',
      allowInsecureHttpForLoopbackOnly: false,
      dynamicRegistration: 'off',
      dpop: 'when-offered',
      signInTimeoutSeconds: 300,
      requestTimeoutSeconds: 15,
    });
  });

  it('takes a delegation profile only by name: rar or scopes', () => {
    expect(parseIdpConfig({ ...good, delegation: 'scopes' }).delegation).toBe('scopes');
    expect(() => parseIdpConfig({ ...good, delegation: 'auto' })).toThrow(/idp\.delegation/);
    expect(() => parseIdpConfig({ ...good, delegationScopePrefix: 'vault ' })).toThrow(/idp\.delegationScopePrefix/);
  });

  it('accepts the lab: plain http on 127.0.0.1 when allowInsecureHttpForLoopbackOnly is set, with a URN resource', () => {
    const c = parseIdpConfig({ issuer: 'http://127.0.0.1:4567', clientId: 'countersign-desktop', resource: 'urn:countersign:app', allowInsecureHttpForLoopbackOnly: true });
    expect(c.resource).toBe('urn:countersign:app');
  });

  it('refuses plain http without the insecure switch, naming the issuer field', () => {
    expect(errorOf({ ...good, issuer: 'http://127.0.0.1:4567' }).message).toMatch(/idp\.issuer must use https/);
  });

  it('refuses plain http to a non-loopback host even with the insecure switch', () => {
    expect(errorOf({ ...good, issuer: 'http://idp.example.com', allowInsecureHttpForLoopbackOnly: true }).message).toMatch(/idp\.issuer may use plain http only on a loopback/);
  });

  it('names each bad field: empty client id, scopes without openid, a non-URI resource, an unknown key', () => {
    expect(errorOf({ ...good, clientId: '' }).message).toContain('idp.clientId must not be empty');
    expect(errorOf({ ...good, scopes: ['profile'] }).message).toContain('idp.scopes must include openid');
    expect(errorOf({ ...good, resource: 'not a uri' }).message).toContain('idp.resource');
    expect(errorOf({ ...good, clientSecret: 'x' }).message).toMatch(/idp\.\(root\).*clientSecret/);
    expect(errorOf({ ...good, issuer: 'ftp://idp.example.com' }).message).toContain('idp.issuer must be an absolute http(s) URL');
    expect(errorOf({ ...good, issuer: 'https://idp.example.com/?x=1' }).message).toContain('idp.issuer must not carry a query');
  });
});
