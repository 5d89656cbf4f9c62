// Builds the React fixture pages of the end-to-end suite (global-setup.js runs it)
// into target/fixtures/react, served by `cargo xtask test` at /fixtures/react/.
// `sqlite-tabs` comes from tests/node_modules, where `cargo xtask build` installs
// the built package: the pages use it exactly as an app would. The worker and
// optimizeDeps settings are the ones README asks of every app.
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

export default defineConfig({
  root: here('.'),
  base: '/fixtures/react/',
  // React's development build: StrictMode mounts twice only there, and its
  // warnings reach the console, which the tests forward.
  mode: 'development',
  define: { 'process.env.NODE_ENV': JSON.stringify('development') },
  plugins: [react()],
  worker: { format: 'es' },
  optimizeDeps: { exclude: ['sqlite-tabs'] },
  logLevel: 'warn',
  build: {
    outDir: here('../../target/fixtures/react'),
    emptyOutDir: true,
    minify: false,
    rollupOptions: {
      input: { hooks: here('hooks.html'), readme: here('readme.html') },
    },
  },
});
