// Types of what eslint.config.js exports for test/lint/layering.test.ts.
import type { Linter } from 'eslint';

export declare const LAYERS: Record<string, { may: readonly string[] | '*'; why: string }>;
export declare function layerOf(relative: string): string | null;
declare const config: Linter.Config[];
export default config;
