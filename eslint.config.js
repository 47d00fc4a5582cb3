// Layering is a lint rule, not a wish: each folder says which process its code runs in, and these
// rules keep each process from reaching into another (see docs/architecture.md). Import specifiers are
// matched as written, so each pattern names a folder wherever it appears in a relative path.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

const electronOnlyInShell = {
  name: 'electron',
  message: 'Only main/electron may import electron: the core, bridge, renderer and common run without it.',
};
const noNodeBuiltins = {
  regex: '^node:|^(fs|path|os|child_process|net|http|https|crypto|url|stream|events|util)$',
  message: 'This layer runs without Node: import only from common/ (Node-only shared code is in common/node/).',
};
const noLab = {
  regex: '(^|/)lab/',
  message: 'The lab stands in for outside parties in tests and demos; product code never imports it.',
};

export default tseslint.config(
  {
    ignores: ['node_modules/**', 'dist/**', '.scratch*/**', 'out/**', 'bench/results/**', 'test-results/**', '**/*.d.ts', 'test/lab/conformance/*.mjs'],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-restricted-imports': ['error', { paths: [electronOnlyInShell] }],
    },
  },
  {
    files: ['main/electron/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            // The one exception: the V8 options every launcher of the core passes (main/core/v8-flags.ts
            // imports nothing). Everything else reaches the core over the typed channel.
            {
              regex: '(^|/)\\.\\./core/(?!v8-flags\\.ts$)|(^|/)main/core/(?!v8-flags\\.ts$)',
              message: 'The shell talks to the core over the channel in common/contract.ts, not by import.',
            },
            { regex: '(^|/)(headless|bridge|renderer)/', message: 'The shell imports only electron, Node and common/.' },
            noLab,
          ],
        },
      ],
    },
  },
  {
    files: ['main/core/**', 'main/headless/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [electronOnlyInShell],
          patterns: [
            { regex: '(^|/)(renderer|bridge)/', message: 'The core does not import the renderer or the bridge.' },
            { regex: '(^|/)electron/', message: 'The core runs without the shell: the two talk over the channel in common/contract.ts.' },
            { regex: '(^|/)\\.\\./headless/|(^|/)main/headless/', message: 'The core is hosted by main/headless and main/electron; it imports neither.' },
            noLab,
          ],
        },
      ],
    },
  },
  {
    files: ['common/**'],
    ignores: ['common/node/**'],
    languageOptions: { globals: {} },
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [electronOnlyInShell],
          patterns: [
            noNodeBuiltins,
            { regex: '(^|/)(main|renderer|bridge|lab)/', message: 'common/ is imported by every process and imports none of them.' },
            { regex: '(^|/)node/', message: 'common/ runs in the renderer too: only common/node/ may use Node.' },
          ],
        },
      ],
      'no-restricted-globals': ['error', 'window', 'document', 'process', 'Buffer', 'require'],
    },
  },
  {
    files: ['common/node/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [electronOnlyInShell],
          patterns: [
            { regex: '(^|/)(main|renderer|bridge|lab)/', message: 'common/node/ is shared by the bridge and the core and imports neither.' },
            { regex: '^(?!node:|\\.{1,2}/)', message: 'common/node/ is bundled into the dependency-free bridge: Node built-ins and common/ only.' },
          ],
        },
      ],
      'no-restricted-globals': ['error', 'window', 'document'],
    },
  },
  {
    files: ['bridge/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [electronOnlyInShell],
          patterns: [
            { regex: '(^|/)(main|renderer|lab)/', message: 'The bridge is a relay: it imports only common/ and common/node/.' },
            { regex: '^(?!node:|\\.{1,2}/)', message: 'The bridge is dependency-free: Node built-ins and common/ only.' },
          ],
        },
      ],
    },
  },
  {
    files: ['renderer/**'],
    languageOptions: { globals: { ...globals.browser } },
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [electronOnlyInShell],
          patterns: [
            noNodeBuiltins,
            { regex: '(^|/)(main|bridge|lab)/', message: 'The renderer reaches the app only through the contract in common/.' },
            { regex: '(^|/)common/node/', message: 'The renderer runs without Node: common/node/ is for the bridge and the core.' },
          ],
        },
      ],
    },
  },
  {
    // Tests and benchmarks drive every layer, the shell's included (with its Electron stand-in).
    files: ['test/**', 'bench/**'],
    rules: { 'no-restricted-imports': 'off' },
  },
);
