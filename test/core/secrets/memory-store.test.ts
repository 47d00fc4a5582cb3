import { describe, expect, it } from 'vitest';
import { MemorySecretStore } from '../../../main/core/secrets/memory-store.ts';

describe('the memory secret store', () => {
  it('holds values for this process only and says why it is in use', async () => {
    const store = new MemorySecretStore('no keychain here');
    expect(store.kind).toBe('memory');
    expect(store.reason).toBe('no keychain here');
    await store.set('a', '1');
    expect(await store.get('a')).toBe('1');
    await store.delete('a');
    expect(await store.get('a')).toBeNull();
    expect(await new MemorySecretStore('x').get('a')).toBeNull();
  });
});
