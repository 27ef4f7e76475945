/**
 * Compiling a model at build time: an esbuild plugin. A web app writes
 *   import model from "lingc:ling-tiny";                 // a built-in config
 *   import model from "./checkpoint/config.json?lingc";  // an HF config.json
 * and its bundle gets the compiled WGSL kernels and launch plans for the forward and decode graphs,
 * plus the host code (`model.load(device, safetensorsBytes)`), all produced during the build.
 * Compile errors are esbuild errors located at the import.
 */
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { Plugin, PartialMessage } from "esbuild";
import { LingcError } from "../ir/errors";
import { BUILTIN_CONFIGS } from "../models/builtin";
import { configFromHf, type LingConfig } from "../models/config";
import { readConfigFile } from "../models/resolve";
import { compileGraph, resolveProfile } from "../backends/wgsl/backend";
import type { BackendOptions } from "../backends/backend";

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
          let config: LingConfig;
          if (args.path.startsWith("lingc:")) {
            const name = args.path.slice("lingc:".length);
            const hf = BUILTIN_CONFIGS[name];
            if (!hf) throw new LingcError(`unknown built-in model '${name}' (built-ins: ${Object.keys(BUILTIN_CONFIGS).join(", ")})`);
            config = configFromHf(hf, name, `built-in config ${name}`);
          } else {
            const file = resolve(args.resolveDir, args.path.slice(0, -"?lingc".length));
            config = readConfigFile(file, dirname(file).split("/").pop() ?? "model");
          }
          const opts: BackendOptions = { noFuse: options.noFuse, limits: options.limits };
          const profile = await resolveProfile(opts);
          const artifacts = { forward: compileGraph(config, "forward", profile, opts.noFuse), decode: compileGraph(config, "decode", profile, opts.noFuse) };
          return { path: args.path, namespace: "lingc-model", pluginData: { config, artifacts } };
        } catch (e) {
          if (!(e instanceof LingcError)) throw e;
          return { errors: [{ text: `lingc: ${e.message}`, location: locate(args.importer, args.path) }] };
        }
      });
      build.onLoad({ filter: /.*/, namespace: "lingc-model" }, (args) => {
        const { config, artifacts } = args.pluginData as { config: LingConfig; artifacts: unknown };
        const host = resolve(HERE, "../backends/wgsl/browser.ts");
        const contents = [
          `import { createBrowserModel } from ${JSON.stringify(host)};`,
          `export const config = ${JSON.stringify(config)};`,
          `export const artifacts = ${JSON.stringify(artifacts)};`,
          `export function load(device, weightBytes, profile) { return createBrowserModel(device, config, artifacts, weightBytes, profile); }`,
          `export default { config, artifacts, load };`,
        ].join("\n");
        return { contents, loader: "js", resolveDir: HERE };
      });
    },
  };
}
