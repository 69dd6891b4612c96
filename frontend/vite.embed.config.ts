import { defineConfig } from "vite";

// The tracker alone, for any page (no React): an ES module and a <script> (IIFE) bundle that
// defines the global `VideoProgress`. Runs after the pages' build (which empties dist/), so it
// only adds dist/embed/.
export default defineConfig({
  publicDir: false,
  build: {
    outDir: "dist/embed",
    emptyOutDir: true,
    sourcemap: true,
    lib: {
      entry: "src/tracker/embed.ts",
      name: "VideoProgress",
      formats: ["es", "iife"],
      fileName: (format) => (format === "es" ? "videoprogress-tracker.js" : `videoprogress-tracker.${format}.js`),
    },
  },
});
