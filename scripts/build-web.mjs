// Builds the browser demo (web/) with the lingc esbuild plugin into dist/web (or the folder given).
import { build } from "esbuild";
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
// Source maps on before the plugin loads, so kernels' provenance names models/*.ts, not the bundle.
process.setSourceMapsEnabled(true);
const { lingcPlugin } = await import("../dist/esbuild-plugin.mjs");

const out = process.argv[2] ?? "dist/web";
mkdirSync(out, { recursive: true });
await build({
  entryPoints: ["web/main.ts"],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  outfile: join(out, "main.js"),
  plugins: [lingcPlugin()],
  logLevel: "warning",
});
copyFileSync("web/index.html", join(out, "index.html"));
console.log(`built the web demo into ${out} (serve it with model.safetensors next to index.html)`);
