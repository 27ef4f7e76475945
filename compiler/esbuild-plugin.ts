/**
 * Compiling a model at build time: an esbuild plugin. A web app writes
 *   import model from "lingc:ling-tiny";                 // a built-in config
 *   import model from "./checkpoint/config.json?lingc";  // an HF config.json
 * and its bundle gets the compiled WGSL kernels and launch plans of the model's graphs (compiled by
 * the driver with the wgsl target's pipeline), plus the host code (`model.load(device,
 * safetensorsBytes)`), all produced during the build.
 * Compile errors are esbuild errors located at the import.
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Plugin, PartialMessage } from "esbuild";
import { LingcError } from "../ir/errors";
import { BUILTIN_CONFIGS } from "../models/builtin";
import { compileProgramWgsl } from "../backends/wgsl/backend";
import { compileProgram } from "./driver/compile";
import { openSource } from "./driver/source";

export interface LingcPluginOptions {
  /** Fusions to switch off, as `--no-fuse`. */
  noFuse?: string[];
  /** WebGPU limit overrides NAME=VALUE (the default profile is WebGPU's baseline). */
  limits?: string[];
}

const HERE = dirname(fileURLToPath(import.meta.url));

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
          const { program } = await compileProgram({ source: await openSource(model), target: "wgsl", settings: { noFuse: options.noFuse, limits: options.limits } });
          const artifacts = Object.fromEntries(compileProgramWgsl(program).map((a) => [a.graph, a]));
          // Editing the config file rebuilds the bundle in watch mode.
          const watchFiles = args.path.startsWith("lingc:") ? [] : [model];
          return { path: args.path, namespace: "lingc-model", pluginData: { artifacts }, watchFiles };
        } catch (e) {
          if (!(e instanceof LingcError)) throw e;
          return { errors: [{ text: `lingc: ${e.message}`, location: locate(args.importer, args.path) }] };
        }
      });
      build.onLoad({ filter: /.*/, namespace: "lingc-model" }, (args) => {
        const { artifacts } = args.pluginData as { artifacts: unknown };
        const host = resolve(HERE, "../backends/wgsl/browser.ts");
        const contents = [
          `import { createBrowserModel } from ${JSON.stringify(host)};`,
          `export const artifacts = ${JSON.stringify(artifacts)};`,
          `export function load(device, weightBytes, profile) { return createBrowserModel(device, Object.values(artifacts), weightBytes, profile); }`,
          `export default { artifacts, load };`,
        ].join("\n");
        return { contents, loader: "js", resolveDir: HERE };
      });
    },
  };
}
