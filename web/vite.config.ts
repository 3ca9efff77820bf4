/// <reference types="vitest/config" />
// Build and dev-server settings. In production the Rust server serves `dist/` at `/`,
// same origin as `/api` and `/socket.io/`; `npm run dev` proxies both to a local server.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

const target = process.env.COURSECHAT_DEV_TARGET ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: {
      '/api': { target, changeOrigin: false },
      '/socket.io': { target, ws: true, changeOrigin: false },
    },
  },
  build: {
    outDir: 'dist',
    sourcemap: true,
  },
  test: {
    environment: 'node',
    include: ['src/**/*.test.ts'],
    env: { TZ: 'UTC' },
  },
});
