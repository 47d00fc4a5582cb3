/**
 * The names an upstream's tools are listed under: Claude Desktop's pattern, stable, distinct, and an
 * upstream name that would make two names meet refused when the configuration is read.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { UpstreamConfigSchema } from '../../../main/core/connectors/mcp-upstream/config.ts';
import { CLAUDE_TOOL_NAME, exposedToolName } from '../../../main/core/connectors/mcp-upstream/tool-names.ts';
import { parseAppConfig } from '../../../main/core/config/config.ts';

const upstreamName = fc.stringMatching(/^[a-z][a-z0-9_-]{0,31}$/).filter((n) => !n.includes('__') && !n.endsWith('_'));
// Any name an upstream could publish: the MCP spec's characters and more, up to 200 characters.
const toolName = fc.string({ minLength: 1, maxLength: 200, unit: fc.constantFrom(...'abcXYZ019_-./: é'.split('')) });

describe('exposedToolName', () => {
  it('keeps a name that already fits, behind its upstream', () => {
    expect(exposedToolName('tickets', 'get_weather')).toBe('tickets__get_weather');
    expect(exposedToolName('a-b', 'Run-1')).toBe('a-b__Run-1');
  });

  it('rewrites a dotted or slashed name into one Claude accepts, with the original name’s hash', () => {
    const dotted = exposedToolName('immich', 'immich.assets.list');
    expect(dotted).toMatch(/^immich__immich_assets_list_[0-9a-f]{8}$/);
    expect(exposedToolName('flow', 'malloy/executeQuery')).toMatch(/^flow__malloy_executeQuery_[0-9a-f]{8}$/);
  });

  it('shortens a 100-character name to 64 with a stable hash', () => {
    const long = `report_${'x'.repeat(93)}`;
    const name = exposedToolName('tickets', long);
    expect(name).toHaveLength(64);
    expect(name).toMatch(CLAUDE_TOOL_NAME);
    expect(name.startsWith('tickets__report_xxx')).toBe(true);
    expect(exposedToolName('tickets', long)).toBe(name);
    expect(exposedToolName('tickets', `${long}y`)).not.toBe(name);
  });

  it('gives every name Claude’s pattern, the same name every time, and different names to different tools', () => {
    fc.assert(
      fc.property(upstreamName, toolName, toolName, (up, a, b) => {
        const ea = exposedToolName(up, a);
        expect(ea).toMatch(CLAUDE_TOOL_NAME);
        expect(ea.startsWith(`${up}__`)).toBe(true);
        expect(exposedToolName(up, a)).toBe(ea);
        if (a !== b) expect(exposedToolName(up, b)).not.toBe(ea);
      }),
      { numRuns: 2000 },
    );
  });

  it('never gives two upstreams the same name for any of their tools', () => {
    fc.assert(
      fc.property(upstreamName, upstreamName, toolName, toolName, (u1, u2, a, b) => {
        fc.pre(u1 !== u2);
        expect(exposedToolName(u1, a)).not.toBe(exposedToolName(u2, b));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('upstream names that would make tool names meet', () => {
  const base = { url: 'https://mcp.example.com/mcp' };

  it('refuses "__" inside an upstream name and a trailing "_", saying why', () => {
    for (const name of ['a__b', 'tickets_']) {
      const parsed = UpstreamConfigSchema.safeParse({ ...base, name });
      expect(parsed.success).toBe(false);
      expect(parsed.error?.issues[0]?.message).toMatch(/separat|run into/);
    }
    expect(UpstreamConfigSchema.safeParse({ ...base, name: 'a_b-c' }).success).toBe(true);
  });

  it('refuses such an upstream when the app configuration is read, naming the field', () => {
    const config = {
      idp: { issuer: 'https://idp.example.com', clientId: 'countersign' },
      vault: { address: 'https://vault.example.com' },
      policyFile: '/nonexistent/policy.jsonc',
      upstreams: [{ ...base, name: 'tickets__v2' }],
    };
    expect(() => parseAppConfig(config, 'test configuration')).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID', message: expect.stringMatching(/upstreams\.0\.name/) }));
  });
});
