// The Vite settings an app using sqlite-tabs needs (see README, "Use it in a React app").
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  plugins: [react()],
  worker: {
    // sqlite-tabs' workers are ES modules with top-level await; Vite's default
    // worker format, iife, cannot hold them and fails the build.
    format: 'es',
  },
  optimizeDeps: {
    // Pre-bundling moves index.js into node_modules/.vite/deps, away from the
    // worker and wasm files its `new URL('./…', import.meta.url)` point to, and
    // the dev server cannot start the database (Vite 7 and earlier). Vite 8
    // rewrites those URLs and would work without it; kept for older Vites.
    exclude: ['sqlite-tabs'],
  },
});
