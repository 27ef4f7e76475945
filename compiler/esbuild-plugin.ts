/**
 * Compiling a model at build time: an esbuild plugin. A web app writes
 *   import model from "lingc:ling-tiny";                 // a built-in config
 *   import model from "./checkpoint/config.json?lingc";  // an HF config.json
 * and its bundle gets the compiled WGSL kernels and launch plans of the model's graphs (compiled by
 * the driver with the wgsl target's pipeline), plus the host code: `await model.load(device,
 * safetensorsBytes)` gives the API's Model (compiler/api.ts: run, generate), all produced during the
 * build. The host code comes from dist/browser.mjs in the package (compiler/browser-api.ts here).
 * Compile errors are esbuild errors located at the import.
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Plugin, PartialMessage } from "esbuild";
import { LingcError } from "../ir/errors";
import { BUILTIN_CONFIGS } from "../models/builtin";
import { compileProgramWgsl } from "../backends/wgsl/backend";
import { compileProgram } from "./driver/compile";
import { openSource } from "./driver/source";
import { tokenizerFiles } from "./driver/tokenizer";

export interface LingcPluginOptions {
  /** Fusions to switch off, as `--no-fuse`. */
  noFuse?: string[];
  /** WebGPU limit overrides NAME=VALUE (the default profile is WebGPU's baseline). */
  limits?: string[];
}

const HERE = dirname(fileURLToPath(import.meta.url));

/** The browser host the generated modules import: the package's bundle, or the sources in the repository. */
function browserHost(): string {
  const bundled = resolve(HERE, "browser.mjs");
  return existsSync(bundled) ? bundled : resolve(HERE, "browser-api.ts");
}

/** Where in the importer the specifier is written, for error locations. */
function locate(importer: string, specifier: string): PartialMessage["location"] {
  try {
    const lines = readFileSync(importer, "utf8").split("\n");
    for (let i = 0; i < lines.length; i++) {
      const col = lines[i]!.indexOf(specifier);
      if (col >= 0) return { file: importer, line: i + 1, column: col, lineText: lines[i]!, length: specifier.length };
    }
  } catch {
    /* no location */
  }
  return { file: importer };
}

export function lingcPlugin(options: LingcPluginOptions = {}): Plugin {
  return {
    name: "lingc",
    setup(build) {
      build.onResolve({ filter: /^lingc:|\.json\?lingc$/ }, async (args) => {
        try {
          let model: string;
          if (args.path.startsWith("lingc:")) {
            model = args.path.slice("lingc:".length);
            if (!BUILTIN_CONFIGS[model]) throw new LingcError(`unknown built-in model '${model}' (built-ins: ${Object.keys(BUILTIN_CONFIGS).join(", ")})`);
          } else {
            model = resolve(args.resolveDir, args.path.slice(0, -"?lingc".length));
          }
          const source = await openSource(model);
          const { program } = await compileProgram({ source, target: "wgsl", settings: { noFuse: options.noFuse, limits: options.limits } });
          const artifacts = Object.fromEntries(compileProgramWgsl(program).map((a) => [a.graph, a]));
          const eos = source.config?.eosTokenIds ?? [];
          // A config.json with a tokenizer.json beside it: the bundle carries the tokenizer (text in and out).
          const tokenizer = args.path.startsWith("lingc:") ? undefined : tokenizerFiles(dirname(model));
          // Editing the config file rebuilds the bundle in watch mode.
          const watchFiles = args.path.startsWith("lingc:") ? [] : [model, ...(tokenizer ? [join(dirname(model), "tokenizer.json")] : [])];
          return { path: args.path, namespace: "lingc-model", pluginData: { artifacts, eos, tokenizer }, watchFiles };
        } catch (e) {
          if (!(e instanceof LingcError)) throw e;
          return { errors: [{ text: `lingc: ${e.message}`, location: locate(args.importer, args.path) }] };
        }
      });
      build.onLoad({ filter: /.*/, namespace: "lingc-model" }, (args) => {
        const { artifacts, eos, tokenizer } = args.pluginData as { artifacts: unknown; eos: number[]; tokenizer?: object };
        const contents = [
          `import { compiledModel, createBrowserModel } from ${JSON.stringify(browserHost())};`,
          `export const artifacts = ${JSON.stringify(artifacts)};`,
          `const model = compiledModel(artifacts, ${JSON.stringify(eos)}${tokenizer ? `, ${JSON.stringify(tokenizer)}` : ""});`,
          `export const load = model.load;`,
          // The graphs as lingc runs them (per-kernel timings with profile.on): what the demo page shows.
          `export function loadGraphs(device, weightBytes, profile) { return createBrowserModel(device, Object.values(artifacts), weightBytes, profile); }`,
          `export default model;`,
        ].join("\n");
        return { contents, loader: "js", resolveDir: HERE };
      });
    },
  };
}
