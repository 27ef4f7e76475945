// Modules made by the lingc esbuild plugin at build time (the package ships the public part as
// lingc/models); the demo also uses loadGraphs, the graphs as lingc runs them.
declare module "lingc:*" {
  const model: import("../compiler/api").CompiledModel;
  export default model;
  export const load: import("../compiler/api").CompiledModel["load"];
  export function loadGraphs(device: GPUDevice, weightBytes: ArrayBuffer, profile?: { on: boolean }): Promise<import("../backends/wgsl/browser").BrowserModel>;
}
