// The Node.js the project's TypeScript sources run on (type stripping, node:sqlite), and what to say when
// the Node running is older. Plain JavaScript that parses on any Node still in use, so an old Node
// stops here with one sentence instead of ERR_UNKNOWN_FILE_EXTENSION at the first .ts file.
//
// `npm install` brings that Node itself: the registry's `node` package (a devDependency) puts a Node 24
// binary in node_modules/.bin, which npm's scripts find first on their PATH. Run as a script (the npm
// hooks before demo, test, start...), this file exits 1 with the sentence when the Node it got is older.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));

/** The minimum from package.json's `engines.node` (">=22.12" → [22, 12, 0]). */
export function neededNode() {
  const range = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).engines.node;
  const m = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(range.trim());
  if (!m) throw new Error(`package.json engines.node must read ">=X.Y", not "${range}"`);
  return [Number(m[1]), Number(m[2] ?? 0), Number(m[3] ?? 0)];
}

export function isOlder(version, needed = neededNode()) {
  const have = version.replace(/^v/, '').split('.').map(Number);
  for (let i = 0; i < 3; i++) if (have[i] !== needed[i]) return (have[i] ?? 0) < needed[i];
  return false;
}

/** The Node binary `npm install` brought (node_modules/node), when it is there. */
export function bundledNode() {
  try {
    const pkgPath = createRequire(join(root, 'package.json')).resolve('node/package.json');
    const bin = JSON.parse(readFileSync(pkgPath, 'utf8')).bin?.node;
    const path = bin && join(dirname(pkgPath), bin);
    return path && existsSync(path) ? path : undefined;
  } catch {
    return undefined;
  }
}

/** One sentence: the version needed, the one running, and how to get the right one. */
export function oldNodeSentence(version = process.version, execPath = process.execPath) {
  const needed = neededNode().slice(0, 2).join('.');
  return (
    `Countersign needs Node.js ${needed} or newer and this is ${version} (${execPath}): ` +
    `run \`npm install\` in ${resolve(root)}, which brings Node.js 24 into node_modules/.bin for npm's scripts ` +
    `(install scripts must be allowed), or install Node.js 24 from https://nodejs.org.`
  );
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && isOlder(process.version)) {
  process.stderr.write(oldNodeSentence() + '\n');
  process.exit(1);
}
