import type { Adapter, AdapterPayload } from 'oidc-provider';

/**
 * A storage adapter per IdP instance (oidc-provider's built-in one is a module-wide LRU of 1000
 * entries shared by every provider in the process). Entries expire at their TTL; `stop()` drops all.
 */
export interface AdapterDump {
  entries: Array<[string, { payload: AdapterPayload; expiresAt: number | null }]>;
  grants: Array<[string, string[]]>;
  secondary: Array<[string, string]>;
}

/**
 * `onChange` is called after every write, so a caller can keep the entries somewhere that outlives the
 * process (`dump()`/`load()`), as a real IdP keeps its grants in a database.
 */
export function memoryAdapter(onChange: () => void = () => {}): { Adapter: new (model: string) => Adapter; clear(): void; dump(): AdapterDump; load(d: AdapterDump): void } {
  const entries = new Map<string, { payload: AdapterPayload; expiresAt: number }>();
  const grants = new Map<string, Set<string>>();
  const secondary = new Map<string, string>();

  const live = (key: string): AdapterPayload | undefined => {
    const e = entries.get(key);
    if (!e) return undefined;
    if (e.expiresAt <= Date.now()) {
      entries.delete(key);
      return undefined;
    }
    return e.payload;
  };

  class LabAdapter implements Adapter {
    readonly model: string;
    constructor(model: string) {
      this.model = model;
    }
    #key(id: string) {
      return `${this.model}:${id}`;
    }
    async upsert(id: string, payload: AdapterPayload, expiresIn: number): Promise<void> {
      const key = this.#key(id);
      entries.set(key, { payload: { ...payload }, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
      if (payload.grantId) {
        const members = grants.get(payload.grantId) ?? new Set<string>();
        members.add(key);
        grants.set(payload.grantId, members);
      }
      if (payload.uid) secondary.set(`${this.model}:uid:${payload.uid}`, id);
      if (payload.userCode) secondary.set(`${this.model}:userCode:${payload.userCode}`, id);
      onChange();
    }
    async find(id: string): Promise<AdapterPayload | undefined> {
      return live(this.#key(id));
    }
    async findByUid(uid: string): Promise<AdapterPayload | undefined> {
      const id = secondary.get(`${this.model}:uid:${uid}`);
      return id ? live(this.#key(id)) : undefined;
    }
    async findByUserCode(userCode: string): Promise<AdapterPayload | undefined> {
      const id = secondary.get(`${this.model}:userCode:${userCode}`);
      return id ? live(this.#key(id)) : undefined;
    }
    async consume(id: string): Promise<void> {
      const p = live(this.#key(id));
      if (p) p.consumed = Math.floor(Date.now() / 1000);
      onChange();
    }
    async destroy(id: string): Promise<void> {
      entries.delete(this.#key(id));
      onChange();
    }
    async revokeByGrantId(grantId: string): Promise<void> {
      for (const key of grants.get(grantId) ?? []) entries.delete(key);
      grants.delete(grantId);
      onChange();
    }
  }

  return {
    Adapter: LabAdapter,
    clear() {
      entries.clear();
      grants.clear();
      secondary.clear();
    },
    dump: () => ({
      entries: [...entries].map(([k, e]) => [k, { payload: e.payload, expiresAt: Number.isFinite(e.expiresAt) ? e.expiresAt : null }]),
      grants: [...grants].map(([k, v]) => [k, [...v]]),
      secondary: [...secondary],
    }),
    load(d) {
      for (const [k, e] of d.entries) entries.set(k, { payload: e.payload, expiresAt: e.expiresAt ?? Infinity });
      for (const [k, v] of d.grants) grants.set(k, new Set(v));
      for (const [k, v] of d.secondary) secondary.set(k, v);
    },
  };
}
