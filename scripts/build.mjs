// Bundles the CLI and the benchmark scripts with esbuild (ESM for Node 20, with source maps), and
// the `lingc view` page (dist/view/: one script with its graph-layout library, for file:// use).
import { copyFileSync, mkdirSync } from "node:fs";
import { build } from "esbuild";

await build({
  entryPoints: { lingc: "compiler/cli/entry.ts", "bench-compile": "bench/compile.ts", "bench-wgsl": "bench/wgsl.ts", "bench-recompute": "bench/recompute.ts", "bench-train-memory": "bench/train-memory.ts", "bench-view": "bench/view.ts", fuzz: "fuzz/main.ts", "esbuild-plugin": "compiler/esbuild-plugin.ts" },
  outdir: "dist",
  outExtension: { ".js": ".mjs" },
  bundle: true,
  platform: "node",
  target: "node20",
  format: "esm",
  sourcemap: true,
  logLevel: "warning",
  // Native addons stay in node_modules and load at run time.
  external: ["onnxruntime-node", "webgpu", "esbuild", "highs", "playwright-core"],
  banner: { js: "import { createRequire as __lingcRequire } from 'node:module'; const require = __lingcRequire(import.meta.url);" },
});

mkdirSync("dist/view", { recursive: true });
await build({ entryPoints: ["compiler/view/page/app.ts"], outfile: "dist/view/app.js", bundle: true, format: "iife", platform: "browser", target: "es2022", minify: true, logLevel: "warning" });
copyFileSync("compiler/view/page/index.html", "dist/view/index.html");
