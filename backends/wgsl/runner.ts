/** The backend contract (GraphRunner, LoadedModel) over WgslGraphs, in Node or in a browser. */
import type { Tensor } from "../../ir/tensor";
import { isDeviceTensor, type DeviceTensor, type GraphRunner, type GraphSignature, type LoadedModel } from "../backend";
import { withRoom, type GpuTensor, type HostTensor, type KernelTiming, type RunOptions, type RunResult, type WgslGraph } from "./host";
import { fromHost, toHost } from "./tensors";
import { typedAsDeclared } from "../narrow-results";
import type { DType } from "../../ir/dtype";

export interface WgslRunner extends GraphRunner {
  graph: WgslGraph;
  lastTimings?: KernelTiming[];
  /** The last unprofiled run's kernels on the GPU (RunResult.gpuMs). */
  lastGpuMs?: number;
  /** The last run's host time: encoding up to its submission, then waiting for its read-back (RunResult.hostMs). */
  lastHostMs?: { encode: number; wait: number };
}

/** A GPU tensor as the backend contract's DeviceTensor. */
interface WgslDeviceTensor extends DeviceTensor {
  gpu: GpuTensor;
}

const wrap = (gpu: GpuTensor, dtype: Tensor["dtype"]): WgslDeviceTensor => ({ onDevice: true, dtype, shape: gpu.shape, gpu });

/** A run's inputs for the host: device tensors as their GPU buffers, the rest as host data. */
function given(inputs: Readonly<Record<string, Tensor | DeviceTensor>>): Record<string, HostTensor | GpuTensor> {
  const out: Record<string, HostTensor | GpuTensor> = {};
  for (const [k, v] of Object.entries(inputs)) out[k] = isDeviceTensor(v) ? (v as WgslDeviceTensor).gpu : toHost(v);
  return out;
}

/** `profile.on` makes each run time its kernels (one submission per kernel). */
export function graphRunner(graph: WgslGraph, profile: { on: boolean }): WgslRunner {
  const a = graph.artifact;
  // Outputs come back as f32 or i32; they are labelled with the dtypes the graph declares (a scaled
  // fp8 output with its scales and their blocks).
  const dtypes = new Map(a.outputs.map((o) => [o.name, a.slots[o.slot]!.dtype]));
  const blocks = new Map(a.outputs.map((o) => [o.name, a.slots[o.slot]!.scales?.block]));
  // Observed values come back as f32 or i32 too; a bf16 or f16 one is labelled so (its values are).
  const slotDtypes = new Map(a.slots.filter((s) => s.name).map((s) => [s.name!, s.dtype as DType]));
  const label = (name: string, t: HostTensor) => fromHost(t, dtypes.get(name) ?? (t.dtype === "f32" ? "f32" : "i64"), blocks.get(name));
  /** A run's read-back outputs, labelled; its times noted on the runner. */
  const outputsOf = (res: RunResult): Record<string, Tensor> => {
    r.lastTimings = res.timings;
    r.lastGpuMs = res.gpuMs;
    r.lastHostMs = res.hostMs;
    const out: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(res.outputs)) out[k] = label(k, v);
    return out;
  };
  const onDevice = (keep: ReadonlySet<string>, lastPosition?: ReadonlySet<string>): RunOptions => ({ keep: (n) => keep.has(n), lastPosition: lastPosition && ((n) => lastPosition.has(n)), profile: profile.on });
  const r: WgslRunner = {
    graph,
    async run(inputs, observe) {
      const host: Record<string, HostTensor> = {};
      for (const [k, v] of Object.entries(inputs)) host[k] = toHost(v);
      const res = await graph.run(host, { observe: observe ? () => true : undefined, profile: profile.on });
      const out = outputsOf(res);
      if (observe) for (const [k, v] of Object.entries(res.observed)) observe(k, typedAsDeclared(fromHost(v, v.dtype === "f32" ? "f32" : "i32"), slotDtypes.get(k) ?? "f32"));
      return out;
    },
    async launchOnDevice(inputs, keep, { lastPosition, nextToken }) {
      const launched = await graph.launch(given(inputs), { ...onDevice(keep, lastPosition), nextToken });
      const kept: Record<string, DeviceTensor> = {};
      for (const [k, v] of Object.entries(launched.kept)) kept[k] = wrap(v, dtypes.get(k) ?? v.dtype);
      const read = launched.result.then((res) => ({ outputs: outputsOf(res), nextToken: res.nextToken! }));
      return { kept, nextToken: wrap(launched.nextToken!, "i64"), read };
    },
    async runOnDevice(inputs, keep, lastPosition) {
      const res = await graph.run(given(inputs), onDevice(keep, lastPosition));
      const out: Record<string, Tensor | DeviceTensor> = outputsOf(res);
      for (const [k, v] of Object.entries(res.kept)) out[k] = wrap(v, dtypes.get(k) ?? v.dtype);
      return out;
    },
  };
  return r;
}

/** The LoadedModel of WgslGraphs on one device (Node's backend and the browser's loader). */
export function wgslModel(device: GPUDevice, graphs: readonly WgslGraph[], profile: { on: boolean }, close: () => void): LoadedModel & { graphs: Record<string, WgslRunner> } {
  return {
    graphs: Object.fromEntries(graphs.map((g) => [g.artifact.graph, graphRunner(g, profile)])),
    signatures: Object.fromEntries(graphs.map((g): [string, GraphSignature] => [g.artifact.graph, g.artifact.signature])),
    reserve(t, axis, rows) {
      return wrap(withRoom(device, (t as WgslDeviceTensor).gpu, axis, rows, "kv cache"), t.dtype);
    },
    release(t) {
      (t as WgslDeviceTensor).gpu.buffer.destroy();
    },
    truncate(t, axis, length) {
      const gpu = (t as WgslDeviceTensor).gpu;
      if (gpu.room?.axis !== axis || length > gpu.shape[axis]!) throw new Error(`truncating a device tensor of shape [${gpu.shape}] to ${length} positions along axis ${axis}`);
      return wrap({ ...gpu, shape: gpu.shape.map((d, i) => (i === axis ? length : d)) }, t.dtype);
    },
    close,
  };
}
