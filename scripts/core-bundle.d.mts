import type { BuildOptions } from 'esbuild';

export const HEADLESS_BUNDLE: string;
export const HEADLESS_INPUTS: string;
export function coreBundleOptions(options: { root: string; entry: string; outfile: string }): BuildOptions & { metafile: true };
export function bundleIsFresh(root: string): boolean;
