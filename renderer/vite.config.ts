import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

/**
 * The renderer build. Relative asset paths (`base: './'`) so the same files load from the headless
 * host's origin and from Electron's app:// protocol; no module-preload polyfill and no inlined assets,
 * because both hosts forbid inline script and `data:` beyond images.
 */
export default defineConfig({
  root: import.meta.dirname,
  base: './',
  plugins: [react()],
  build: {
    outDir: `${import.meta.dirname}/../dist/renderer`,
    emptyOutDir: true,
    target: 'es2022',
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
  },
});
