// Layering is a lint rule, not a wish: each folder says which process its code runs in, and these
// rules keep each process from reaching into another (see docs/architecture.md).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

const electronOnlyInShell = {
  name: 'electron',
  message: 'Only main/electron may import electron: the core, bridge, renderer and common run without it.',
};
const noNodeBuiltins = {
  regex: '^node:|^(fs|path|os|child_process|net|http|https|crypto|url|stream|events|util)$',
  message: 'This layer runs without Node: import only from common/.',
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
    rules: { 'no-restricted-imports': 'off' },
  },
  {
    files: ['main/core/**', 'main/headless/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [electronOnlyInShell],
          patterns: [{ regex: '(^|/)(renderer|bridge|lab)/', message: 'The core does not import the renderer, the bridge or the lab.' }],
        },
      ],
    },
  },
  {
    files: ['common/**'],
    languageOptions: { globals: {} },
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [electronOnlyInShell],
          patterns: [
            noNodeBuiltins,
            { regex: '(^|/)(main|renderer|bridge|lab)/', message: 'common/ is imported by every process and imports none of them.' },
          ],
        },
      ],
      'no-restricted-globals': ['error', 'window', 'document', 'process', 'Buffer', 'require'],
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
            { regex: '(^|/)(main|renderer|lab)/', message: 'The bridge is a relay: it imports only common/.' },
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
          ],
        },
      ],
    },
  },
);
