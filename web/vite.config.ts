// The page is served by dora-web at any root path (--root-path): relative asset URLs.
import { defineConfig } from "vite";
import vue from "@vitejs/plugin-vue";

export default defineConfig({
  base: "./",
  plugins: [vue()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 1024 },
  server: { proxy: { "/api": { target: "http://127.0.0.1:8080", ws: true } } },
});
