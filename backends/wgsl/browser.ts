/**
 * Loading a compiled model in a browser: the artifacts embedded by the esbuild plugin, a GPUDevice
 * from navigator.gpu, and the checkpoint's safetensors bytes (fetched by the page). Gives the same
 * LoadedModel contract as the Node backends, so the same generate loop runs in the page.
 */
import { LingcError } from "../../ir/errors";
import { scaleFactors } from "../../ir/quant";
import { decodeTensor, parseSafetensors } from "../weights/safetensors-format";
import type { LoadedModel } from "../backend";
import type { WgslArtifact } from "./artifact";
import { WgslGraph, type WeightProvider } from "./host";
import { SharedWeights } from "./shared-weights";
import { wgslModel, type WgslRunner } from "./runner";

export interface BrowserModel extends LoadedModel {
  graphs: Record<string, WgslRunner>;
}

/** Weights by checkpoint name from one safetensors file in memory; `*` names are stacked over experts. */
export function weightsFromBytes(bytes: ArrayBuffer, file = "model.safetensors"): WeightProvider {
  const u8 = new Uint8Array(bytes);
  const { entries } = parseSafetensors(file, u8.length, (o, n) => u8.subarray(o, o + n));
  const one = (name: string): Float32Array | Int32Array => {
    const e = entries.get(name);
    if (!e) throw new LingcError(`${file}: tensor "${name}" is missing`);
    if (!e.dtype) throw new LingcError(`${file}: tensor "${name}" has dtype ${e.stDtype}, which lingc does not compute with`);
    const n = e.shape.reduce((a, b) => a * b, 1);
    const data = decodeTensor(bytes.slice(e.begin, e.end), e.dtype, n, `${file}: tensor "${name}"`);
    // An fp8 weight's scales as the factors the kernels read (UE8M0 exponents decoded: ir/quant.ts scaleFactors).
    if (name.endsWith("_scale_inv")) return scaleFactors(data, e.dtype);
    return data instanceof Float32Array ? data : Int32Array.from(data);
  };
  return (name, shape) => {
    if (!name.includes(".*.")) {
      const d = one(name);
      const want = shape.reduce((a, b) => a * b, 1);
      if (d.length !== want) throw new LingcError(`${file}: tensor "${name}" has ${d.length} values, the model expects [${shape}]`);
      return d;
    }
    const per = shape.slice(1).reduce((a, b) => a * b, 1);
    const out = new Float32Array(shape[0]! * per);
    for (let e = 0; e < shape[0]!; e++) {
      const part = one(name.replace(".*.", `.${e}.`));
      if (part.length !== per) throw new LingcError(`${file}: tensor "${name.replace(".*.", `.${e}.`)}" has ${part.length} values, the model expects ${per}`);
      out.set(part, e * per);
    }
    return out;
  };
}

/** Loads compiled artifacts (one per graph) on a device with the weights of one safetensors file. */
export async function createBrowserModel(device: GPUDevice, artifacts: readonly WgslArtifact[], weightBytes: ArrayBuffer, profile = { on: false }): Promise<BrowserModel> {
  const provide = weightsFromBytes(weightBytes);
  const graphs: WgslGraph[] = [];
  // One upload of each weight for all of the model's graphs.
  const shared = new SharedWeights();
  for (const a of artifacts) graphs.push(await WgslGraph.load(device, a, provide, shared));
  return wgslModel(device, graphs, profile, () => {
    for (const g of graphs) g.destroy();
  });
}
