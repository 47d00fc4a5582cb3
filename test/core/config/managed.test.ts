/**
 * Managed configuration: the organisation's file (Linux, or the file COUNTERSIGN_MANAGED_CONFIG names)
 * laid over the person's, its fields listed, a broken one failing start-up; the macOS and Windows
 * readers are driven through a stand-in for `plutil` / `reg` (those commands do not exist here),
 * named as such, fed the output those tools print.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError } from '../../../common/errors.ts';
import { loadConfiguration } from '../../../main/core/config/config.ts';
import { applyManaged, MANAGED_CONFIG_ENV, readManagedConfig } from '../../../main/core/config/managed.ts';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'countersign-managed-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const person = {
  idp: { issuer: 'https://idp.person.example', clientId: 'mine', delegation: 'rar' },
  vault: { address: 'https://vault.person.example' },
  policyFile: '/home/me/policy.jsonc',
};
const organisation = {
  idp: { issuer: 'https://idp.corp.example', delegation: 'scopes' },
  vault: { address: 'https://vault.corp.example' },
};

async function file(name: string, value: unknown): Promise<string> {
  const f = join(dir, name);
  await writeFile(f, typeof value === 'string' ? value : JSON.stringify(value));
  return f;
}

describe('managed configuration', () => {
  it('lays the organisation’s fields over the person’s: the person cannot override them', async () => {
    const env = { [MANAGED_CONFIG_ENV]: await file('managed.json', organisation) };
    const { config, managed } = await loadConfiguration(await file('person.json', person), {
      platform: 'linux',
      env,
    });
    expect(config.idp.issuer).toBe('https://idp.corp.example');
    expect(config.idp.delegation).toBe('scopes');
    expect(config.vault.address).toBe('https://vault.corp.example');
    expect(config.idp.clientId).toBe('mine');
    expect(config.policyFile).toBe('/home/me/policy.jsonc');
    expect(managed).toEqual({
      where: env[MANAGED_CONFIG_ENV],
      fields: ['idp.issuer', 'idp.delegation', 'vault.address'],
    });
  });

  it('is the whole configuration when the person has none', async () => {
    const env = {
      [MANAGED_CONFIG_ENV]: await file('whole.json', {
        ...person,
        ...organisation,
        idp: { ...person.idp, ...organisation.idp },
      }),
    };
    const { config } = await loadConfiguration(join(dir, 'absent.json'), { platform: 'linux', env });
    expect(config.vault.address).toBe('https://vault.corp.example');
  });

  it('changes nothing where none is installed, and a broken one fails start-up with the file named', async () => {
    expect(
      await readManagedConfig({ platform: 'linux', env: { [MANAGED_CONFIG_ENV]: join(dir, 'none.json') } }),
    ).toBeUndefined();
    const broken = await file('broken.json', '{ not json');
    await expect(
      readManagedConfig({ platform: 'linux', env: { [MANAGED_CONFIG_ENV]: broken } }),
    ).rejects.toSatisfy((e: unknown) => AppError.is(e, 'CONFIG_INVALID') && e.message.includes(broken));
    const invalid = await file('invalid.json', { vault: { address: 'not a url' } });
    await expect(
      loadConfiguration(await file('p2.json', person), {
        platform: 'linux',
        env: { [MANAGED_CONFIG_ENV]: invalid },
      }),
    ).rejects.toThrow(/managed configuration .*vault\.address/);
  });

  it('merges objects and replaces lists whole, listing each managed leaf', () => {
    const { merged, fields } = applyManaged(
      { upstreams: [{ name: 'mine' }], approvals: { tier3: 'local', timeoutSeconds: 30 } },
      { upstreams: [], approvals: { tier3: 'idp-when-offered' } },
    );
    expect(merged).toEqual({ upstreams: [], approvals: { tier3: 'idp-when-offered', timeoutSeconds: 30 } });
    expect(fields).toEqual(['upstreams', 'approvals.tier3']);
  });

  it('reads the Config key of the macOS managed preferences and the Windows policy value (through a stand-in for plutil and reg)', async () => {
    const calls: string[][] = [];
    const standIn = (outputs: Record<string, string>) => async (command: string, args: string[]) => {
      calls.push([command, ...args]);
      if (!(command in outputs)) throw new Error('not found');
      return outputs[command]!;
    };
    const mac = await readManagedConfig({
      platform: 'darwin',
      env: {},
      run: standIn({ plutil: JSON.stringify(organisation) }),
    });
    expect(mac).toEqual({
      where: '/Library/Managed Preferences/com.countersign.app.plist (Config)',
      values: organisation,
    });
    expect(calls.at(-1)).toEqual([
      'plutil',
      '-extract',
      'Config',
      'raw',
      '-o',
      '-',
      '/Library/Managed Preferences/com.countersign.app.plist',
    ]);
    const regOutput = `\r\nHKEY_LOCAL_MACHINE\\SOFTWARE\\Policies\\Countersign\r\n    Config    REG_SZ    ${JSON.stringify(organisation)}\r\n\r\n`;
    const win = await readManagedConfig({ platform: 'win32', env: {}, run: standIn({ reg: regOutput }) });
    expect(win).toEqual({ where: 'HKLM\\SOFTWARE\\Policies\\Countersign\\Config', values: organisation });
    expect(await readManagedConfig({ platform: 'win32', env: {}, run: standIn({}) })).toBeUndefined();
    expect(await readManagedConfig({ platform: 'darwin', env: {}, run: standIn({}) })).toBeUndefined();
  });
});
