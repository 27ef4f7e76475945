// Modules made by the lingc esbuild plugin at build time.
declare module "lingc:*" {
  import type { BrowserModel } from "../backends/wgsl/browser";
  import type { WgslArtifact } from "../backends/wgsl/artifact";
  import type { LingConfig } from "../models/config";
  const model: {
    config: LingConfig;
    artifacts: { forward: WgslArtifact; decode: WgslArtifact };
    load(device: GPUDevice, weightBytes: ArrayBuffer, profile?: { on: boolean }): Promise<BrowserModel>;
  };
  export default model;
}
