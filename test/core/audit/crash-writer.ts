// Child process of crash.test.ts: appends records as fast as it can and prints `seq hash` for each one
// after append() has resolved (stdout to a pipe is synchronous on Linux), until it is killed.
import { AuditStore } from '../../../main/core/audit/store.ts';
import { memorySecretStore, toolCall } from './fixtures.ts';

const dataDir = process.argv[2]!;
const store = await AuditStore.open({ dataDir, secrets: memorySecretStore() });
for (let i = 0; ; i++) {
  const r = await store.append(toolCall(i, { summary: `crash round ${process.argv[3]} #${i} ${'x'.repeat(i % 3000)}` }));
  process.stdout.write(`${r.seq} ${r.hash}\n`);
}
