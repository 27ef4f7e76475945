// Bundles the CLI and the benchmark scripts with esbuild (ESM for Node 20, with source maps), and
// the `lingc view` page (dist/view/: one script with its graph-layout library, for file:// use).
import { copyFileSync, mkdirSync, writeFileSync } from "node:fs";
import { build } from "esbuild";
import ts from "typescript";

await build({
  entryPoints: { lingc: "compiler/cli/entry.ts", api: "compiler/api.ts", "bench-compile": "bench/compile.ts", "bench-wgsl": "bench/wgsl.ts", "bench-recompute": "bench/recompute.ts", "bench-plan-calibrate": "bench/plan-calibrate.ts", "bench-train-memory": "bench/train-memory.ts", "bench-view": "bench/view.ts", fuzz: "fuzz/main.ts", "esbuild-plugin": "compiler/esbuild-plugin.ts" },
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

// The browser host the esbuild plugin's modules import (compiler/browser-api.ts), for web apps.
await build({ entryPoints: ["compiler/browser-api.ts"], outfile: "dist/browser.mjs", bundle: true, format: "esm", platform: "browser", target: "es2022", sourcemap: true, logLevel: "warning" });
// Types for the plugin's imports in an app: /// <reference types="lingc/models" />.
const compiled = `{
  const model: import("lingc").CompiledModel;
  export default model;
  export const load: import("lingc").CompiledModel["load"];
  export const artifacts: import("lingc").CompiledModel["artifacts"];
}`;
writeFileSync("dist/models.d.ts", `// Modules the lingc esbuild plugin makes at build time: a built-in config, or an HF config.json.\ndeclare module "lingc:*" ${compiled}\ndeclare module "*.json?lingc" ${compiled}\n`);
mkdirSync("dist/view", { recursive: true });
await build({ entryPoints: ["compiler/view/page/app.ts"], outfile: "dist/view/app.js", bundle: true, format: "iife", platform: "browser", target: "es2022", minify: true, logLevel: "warning" });
copyFileSync("compiler/view/page/index.html", "dist/view/index.html");

// The public API's declarations (compiler/api.ts names no internal type: its .d.ts stands alone).
{
  const options = { declaration: true, emitDeclarationOnly: true, skipLibCheck: true, target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler, types: ["node"], noResolve: false, isolatedModules: true };
  const program = ts.createProgram(["compiler/api.ts"], options);
  let dts;
  program.emit(program.getSourceFile("compiler/api.ts"), (name, text) => {
    if (name.endsWith("api.d.ts")) dts = text;
  }, undefined, true);
  // A side-effect import (the op table's registration) says nothing about types.
  dts = dts?.replace(/^import "[^"]*";\n/gm, "");
  if (!dts || /(from|import) "\.\.?\//.test(dts)) throw new Error(`compiler/api.ts: its declarations ${dts ? "import internal modules" : "were not emitted"}`);
  writeFileSync("dist/api.d.ts", dts);
}
