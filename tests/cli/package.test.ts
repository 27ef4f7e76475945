/**
 * lingc as an installable package: `npm pack` gives a small tarball with the CLI bundle, the view
 * page, the esbuild plugin and the CUDA runtime sources (here packed from the bundles the test setup
 * built: --ignore-scripts, so the prepack build does not rewrite dist/ under the other tests);
 * everything the bundles import is a dependency, an optional peer (onnxruntime-node: only the onnx
 * backend needs it) or part of Node; installed alone into a fresh folder, `npx lingc generate
 * --backend wgsl` and a script on the public API (type-checked against the package's declarations)
 * reproduce the golden ids, and `--backend onnx` says what to install.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { goldenGreedy } from "../support/golden";
import { GOLDEN_DIR, GOLDEN_FILE, ROOT, scratchDir } from "../support/paths";

interface PackInfo {
  filename: string;
  size: number;
  files: { path: string }[];
}

const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { dependencies: Record<string, string>; peerDependencies: Record<string, string>; peerDependenciesMeta: Record<string, { optional?: boolean }> };
const dir = scratchDir("lingc-pack-");

describe("the npm package", () => {
  let info: PackInfo;

  it("packs the CLI, the view page, the esbuild plugin and the CUDA runtime, under 5 MB", () => {
    const out = execFileSync("npm", ["pack", "--json", "--ignore-scripts", "--pack-destination", dir], { cwd: ROOT, encoding: "utf8", env: { ...process.env, npm_config_loglevel: "error" } });
    info = (JSON.parse(out.slice(out.indexOf("["))) as PackInfo[])[0]!;
    const files = info.files.map((f) => f.path);
    for (const f of ["bin/lingc.mjs", "dist/lingc.mjs", "dist/api.mjs", "dist/api.d.ts", "dist/browser.mjs", "dist/models.d.ts", "dist/lingc.mjs.map", "dist/esbuild-plugin.mjs", "dist/view/app.js", "dist/view/index.html", "backends/cuda/runtime/lingc_runtime.cu", "backends/cuda/runtime/lingc_runtime.h", "README.md", "package.json"]) expect(files).toContain(f);
    // Sources, tests and benchmarks stay out (the bundles carry what runs).
    expect(files.filter((f) => /^(tests|bench|fuzz|models|ir|compiler)\//.test(f) || /^dist\/(bench|fuzz)/.test(f))).toEqual([]);
    expect(info.size).toBeLessThan(5e6);
  }, 120_000);

  it("imports nothing at run time but its dependencies, the optional onnxruntime-node peer and Node's own modules", () => {
    const allowed = new Set([...Object.keys(pkg.dependencies), ...builtinModules]);
    const optional = Object.keys(pkg.peerDependencies).filter((p) => pkg.peerDependenciesMeta[p]?.optional);
    expect(optional).toEqual(["onnxruntime-node"]);
    for (const bundle of ["dist/lingc.mjs", "dist/api.mjs", "dist/esbuild-plugin.mjs", "dist/browser.mjs"]) {
      const text = readFileSync(join(ROOT, bundle), "utf8");
      const specs = [...text.matchAll(/\b(?:import\(|require\(|from )"([^".][^"]*)"/g)].map((m) => m[1]!.replace(/^node:/, ""));
      const bare = [...new Set(specs.map((s) => (s.startsWith("@") ? s.split("/").slice(0, 2).join("/") : s.split("/")[0]!)))];
      for (const b of bare) expect(allowed.has(b) || optional.includes(b), `${bundle} imports ${b}`).toBe(true);
    }
  });

  it("installs alone into a fresh folder: npx lingc generate reproduces the golden ids on wgsl; onnx names what to install", () => {
    const app = join(dir, "app");
    execFileSync("mkdir", ["-p", app]);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", version: "1.0.0", private: true }));
    execFileSync("npm", ["install", join(dir, info.filename), "--no-audit", "--no-fund", "--loglevel=error"], { cwd: app, stdio: "pipe" });
    const golden = goldenGreedy(readAllSafetensors(GOLDEN_FILE));
    const prompt = golden.prompts.map((p) => p.join(",")).join(";");
    const g = spawnSync("npx", ["lingc", "generate", GOLDEN_DIR, "--backend", "wgsl", "--prompt", prompt, "--max-new-tokens", String(golden.steps)], { cwd: app, encoding: "utf8" });
    expect(g.status, g.stderr).toBe(0);
    expect(g.stdout).toBe(golden.tokens.map((t) => t.join(" ") + "\n").join(""));
    // The README's script: the public API, typed (tsc against the package's declarations) and run.
    writeFileSync(
      join(app, "gen.mts"),
      `import { load, type GenerateOptions } from "lingc";
const model = await load(${JSON.stringify(GOLDEN_DIR)}, { backend: "wgsl" });
const streamed: number[] = [];
const options: GenerateOptions = { maxNewTokens: ${golden.steps}, onToken: (seq, token) => { if (seq === 0) streamed.push(token); } };
const ids = await model.generate(${JSON.stringify(golden.prompts)}, options);
const out = await model.run({ input_ids: { dtype: "i64", shape: [1, 3], data: [5, 9, 13] } });
console.log(JSON.stringify({ ids, streamed, logits: out["logits"]!.shape }));
model.close();
`,
    );
    writeFileSync(join(app, "tsconfig.json"), JSON.stringify({ compilerOptions: { target: "ES2022", module: "NodeNext", moduleResolution: "NodeNext", strict: true, noEmit: true, skipLibCheck: true, types: [] }, files: ["gen.mts"] }));
    const tsc = spawnSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", app], { cwd: app, encoding: "utf8" });
    expect(tsc.status, tsc.stdout + tsc.stderr).toBe(0);
    writeFileSync(join(app, "gen.mjs"), readFileSync(join(app, "gen.mts"), "utf8").replace(", type GenerateOptions", "").replace("const streamed: number[] = []", "const streamed = []").replace("const options: GenerateOptions =", "const options =").replace('out["logits"]!.shape', 'out["logits"].shape'));
    const s = spawnSync(process.execPath, ["gen.mjs"], { cwd: app, encoding: "utf8" });
    expect(s.status, s.stderr).toBe(0);
    const got = JSON.parse(s.stdout.trim().split("\n").pop()!) as { ids: number[][]; streamed: number[]; logits: number[] };
    expect(got.ids).toEqual(golden.tokens);
    expect(got.streamed).toEqual(golden.tokens[0]);
    expect(got.logits).toEqual([1, 3, 512]);
    // A web app: the plugin from the package compiles its imports at build time, and tsc types them.
    copyFileSync(join(GOLDEN_DIR, "config.json"), join(app, "config.json"));
    writeFileSync(
      join(app, "page.ts"),
      `/// <reference types="lingc/models" />
import tiny from "lingc:ling-tiny";
import mine from "./config.json?lingc";
export async function start(device: object, weights: ArrayBuffer): Promise<number[][]> {
  const limits: Record<string, number> = { ...tiny.requiredLimits, ...mine.requiredLimits };
  const model = await mine.load(device, weights);
  return Object.keys(limits).length ? [] : model.generate([[1, 2, 3]], { maxNewTokens: 2 });
}
`,
    );
    writeFileSync(join(app, "tsconfig.web.json"), JSON.stringify({ compilerOptions: { target: "ES2022", module: "ESNext", moduleResolution: "Bundler", strict: true, noEmit: true, skipLibCheck: true, types: [] }, files: ["page.ts"] }));
    const webTsc = spawnSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", "tsconfig.web.json"], { cwd: app, encoding: "utf8" });
    expect(webTsc.status, webTsc.stdout + webTsc.stderr).toBe(0);
    writeFileSync(
      join(app, "bundle.mjs"),
      `import { build } from "esbuild";
import { lingcPlugin } from "lingc/esbuild-plugin";
await build({ entryPoints: ["page.ts"], bundle: true, format: "esm", platform: "browser", outfile: "out/page.js", plugins: [lingcPlugin()], logLevel: "error" });
`,
    );
    const bundled = spawnSync(process.execPath, ["bundle.mjs"], { cwd: app, encoding: "utf8" });
    expect(bundled.status, bundled.stderr).toBe(0);
    const page = readFileSync(join(app, "out/page.js"), "utf8");
    expect(page).toContain("compiledModel");
    // Two models, each its forward, prefill and decode graphs.
    expect(page.match(/"format":\s*"lingc-wgsl-1"|format: "lingc-wgsl-1"/g)?.length).toBe(6);
    const o = spawnSync("npx", ["lingc", "run", GOLDEN_DIR, "--backend", "onnx", "--input", GOLDEN_FILE, "--out", join(app, "out.safetensors")], { cwd: app, encoding: "utf8" });
    expect(o.status).toBe(1);
    expect(o.stderr).toContain("the onnx backend needs the onnxruntime-node package");
    expect(o.stderr).toContain("ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.30.0");
  }, 300_000);
});
