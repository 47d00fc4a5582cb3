// Layering is a lint rule, not a wish: each folder says which process its code runs in, and LAYERS says
// which folders each may import (see docs/architecture.md). Imports are resolved to the folder they
// reach, so `../core/x.ts` from main/electron and `../../main/core/x.ts` from a test are the same edge.
import path from 'node:path';
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

/**
 * Every top-level code folder, and the folders its code may import besides its own. A folder not
 * listed here is not code (docs/, build/, mcpb/); files at the root (configs) are not layered.
 */
export const LAYERS = {
  'main/core': { may: ['common', 'common/node'], why: 'the core runs without the shell and its hosts: the shell reaches it over the channel in common/contract.ts.' },
  'main/headless': { may: ['common', 'common/node', 'main/core'], why: 'the headless host hosts the core; it never loads the shell.' },
  'main/electron': { may: ['common', 'common/node'], why: 'the shell talks to the core over the channel in common/contract.ts, not by import.' },
  common: { may: [], why: 'common/ is imported by every process and imports none of them (only common/node/ may use Node).' },
  'common/node': { may: ['common'], why: 'common/node/ is shared by the bridge and the core and imports neither.' },
  bridge: { may: ['common', 'common/node'], why: 'the bridge is a relay: it imports only common/ and common/node/.' },
  renderer: { may: ['common'], why: 'the renderer reaches the app only through the contract in common/.' },
  lab: { may: ['common', 'common/node', 'main/core', 'main/headless'], why: 'the lab stands in for outside parties; its demo launcher hosts the core, never the shell.' },
  scripts: { may: [], why: 'build scripts read the sources as files, they do not run them.' },
  bin: { may: ['scripts', 'main/headless'], why: 'the command starts the headless host, which starts the rest.' },
  test: { may: '*', why: 'tests drive every layer, the shell included (with its Electron test double).' },
  bench: { may: '*', why: 'benchmarks drive every layer.' },
};

/** The LAYERS folder a repository-relative path is in (the longest match: common/node before common). */
export function layerOf(relative) {
  let found = null;
  for (const folder of Object.keys(LAYERS)) {
    if ((relative === folder || relative.startsWith(folder + '/')) && (!found || folder.length > found.length)) found = folder;
  }
  return found;
}

const layering = {
  meta: { type: 'problem', schema: [] },
  create(context) {
    const root = context.cwd;
    const from = layerOf(path.relative(root, context.filename).split(path.sep).join('/'));
    if (!from || LAYERS[from].may === '*') return {};
    const check = (node) => {
      const spec = node.source?.value;
      if (typeof spec !== 'string' || !spec.startsWith('.')) return;
      const target = path.relative(root, path.resolve(path.dirname(context.filename), spec)).split(path.sep).join('/');
      const to = layerOf(target);
      if (!to || to === from || LAYERS[from].may.includes(to)) return;
      context.report({ node: node.source, message: `${from} may not import ${to}: ${LAYERS[from].why}` });
    };
    return { ImportDeclaration: check, ExportNamedDeclaration: check, ExportAllDeclaration: check, ImportExpression: check };
  },
};

const electronOnlyInShell = {
  name: 'electron',
  message: 'Only main/electron may import electron: the core, bridge, renderer and common run without it.',
};
const noNodeBuiltins = {
  regex: '^node:|^(fs|path|os|child_process|net|http|https|crypto|url|stream|events|util)$',
  message: 'This layer runs without Node: import only from common/ (Node-only shared code is in common/node/).',
};
const onlyNodeAndRelative = (who) => ({ regex: '^(?!node:|\\.{1,2}/)', message: `${who} is dependency-free: Node built-ins and common/ only.` });
// The bridge's one dependency, bundled in (scripts/build-bridge.mjs): the handshake's HMAC-SHA256.
const bridgeImports = { regex: '^(?!node:|\\.{1,2}/|@noble/hashes/(hmac|sha2)$)', message: 'The bridge takes Node built-ins, common/ and @noble/hashes (hmac, sha2) only: scripts/build-bridge.mjs bundles nothing else.' };

export default tseslint.config(
  {
    ignores: ['node_modules/**', 'dist/**', '.scratch*/**', 'out/**', 'bench/results/**', 'test-results/**', '**/*.d.ts', 'test/lab/conformance/*.mjs'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    plugins: { layering: { rules: { folders: layering } } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'layering/folders': 'error',
      'no-restricted-imports': ['error', { paths: [electronOnlyInShell] }],
    },
  },
  {
    files: ['main/electron/**'],
    rules: { 'no-restricted-imports': 'off' },
  },
  {
    files: ['common/**'],
    ignores: ['common/node/**'],
    languageOptions: { globals: {} },
    rules: {
      'no-restricted-imports': ['error', { paths: [electronOnlyInShell], patterns: [noNodeBuiltins] }],
      'no-restricted-globals': ['error', 'window', 'document', 'process', 'Buffer', 'require'],
    },
  },
  {
    files: ['common/node/**'],
    rules: {
      'no-restricted-imports': ['error', { paths: [electronOnlyInShell], patterns: [onlyNodeAndRelative('common/node/, bundled into the bridge,')] }],
      'no-restricted-globals': ['error', 'window', 'document'],
    },
  },
  {
    files: ['bridge/**'],
    rules: {
      'no-restricted-imports': ['error', { paths: [electronOnlyInShell], patterns: [bridgeImports] }],
    },
  },
  {
    files: ['renderer/**'],
    languageOptions: { globals: { ...globals.browser } },
    rules: {
      'no-restricted-imports': ['error', { paths: [electronOnlyInShell], patterns: [noNodeBuiltins] }],
    },
  },
  {
    // Tests and benchmarks drive every layer, the shell's included (with its Electron test double).
    files: ['test/**', 'bench/**'],
    rules: { 'no-restricted-imports': 'off' },
  },
);
