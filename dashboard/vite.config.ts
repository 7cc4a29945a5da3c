import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// `npm run dev` proxies API calls to a local API (uvicorn on :8000); the production build is
// served by the API itself (src/blueprint_engine/routers/dashboard.py).
const api = process.env.API_URL ?? "http://127.0.0.1:8000";
const apiPaths = ["/config", "/workflows", "/workflow", "/runs", "/events", "/sessions", "/tools",
  "/blueprint", "/me", "/health"];

export default defineConfig({
  plugins: [react()],
  build: { chunkSizeWarningLimit: 600, sourcemap: false },
  server: { proxy: Object.fromEntries(apiPaths.map((p) => [p, { target: api, changeOrigin: true }])) },
});
