/**
 * A model compiled to WGSL at build time, as a bundled web app imports it (the esbuild plugin's
 * module): its artifacts, and `load(device, weights)` giving the API's Model. Browser-safe: bundled
 * for the browser as dist/browser.mjs, which the plugin's modules import.
 */
import type { CompiledModel } from "./api";
import type { WgslArtifact } from "../backends/wgsl/artifact";
import { createBrowserModel } from "../backends/wgsl/browser";
import { publicModel } from "./public-model";
import { textTokenizer } from "./text-tokenizer";

export function compiledModel(artifacts: Readonly<Record<string, WgslArtifact>>, eos: readonly number[], tokenizerFiles?: { tokenizer: object; config: object }): CompiledModel {
  const tokenizer = tokenizerFiles ? textTokenizer(tokenizerFiles.tokenizer, tokenizerFiles.config) : undefined;
  const requiredLimits: Record<string, number> = {};
  for (const a of Object.values(artifacts)) for (const [k, v] of Object.entries(a.requiredLimits)) requiredLimits[k] = Math.max(requiredLimits[k] ?? 0, v);
  return {
    artifacts,
    requiredLimits,
    ...(tokenizer ? { tokenizer } : {}),
    load: async (device, weights) => publicModel(await createBrowserModel(device as GPUDevice, Object.values(artifacts), weights), "wgsl", eos, tokenizer),
  };
}

export { createBrowserModel } from "../backends/wgsl/browser";
