import { defineConfig } from "vitest/config";

// `npm run dev` serves the pages with hot reload and forwards API calls to a running
// `videoprogress dev` (port 8000); `npm run build` writes dist/, which the API serves.
export default defineConfig({
  server: {
    proxy: { "/api": "http://127.0.0.1:8000", "/dev": "http://127.0.0.1:8000" },
  },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts", "src/**/*.test.tsx"],
    testTimeout: 30_000, // the 2,000-row tests on a busy shared machine
  },
});
