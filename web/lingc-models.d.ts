// Modules made by the lingc esbuild plugin at build time.
declare module "lingc:*" {
  import type { BrowserModel } from "../backends/wgsl/browser";
  import type { WgslArtifact } from "../backends/wgsl/artifact";
  const model: {
    /** The compiled graphs by name (forward, decode). */
    artifacts: Record<string, WgslArtifact>;
    load(device: GPUDevice, weightBytes: ArrayBuffer, profile?: { on: boolean }): Promise<BrowserModel>;
  };
  export default model;
}
