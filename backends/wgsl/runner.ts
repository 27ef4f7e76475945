/** A GraphRunner (the backend contract) over a WgslGraph, in Node or in a browser. */
import type { Tensor } from "../../ir/tensor";
import type { GraphRunner } from "../backend";
import type { HostTensor, KernelTiming, WgslGraph } from "./host";
import { fromHost, toHost } from "./tensors";

export interface WgslRunner extends GraphRunner {
  graph: WgslGraph;
  lastTimings?: KernelTiming[];
}

/** `profile.on` makes each run time its kernels (one submission per kernel). */
export function graphRunner(graph: WgslGraph, profile: { on: boolean }): WgslRunner {
  const a = graph.artifact;
  // Outputs come back as f32 or i32; they are labelled with the dtypes the graph declares.
  const dtypes = new Map(a.outputs.map((o) => [o.name, a.slots[o.slot]!.dtype]));
  const r: WgslRunner = {
    graph,
    async run(inputs, observe) {
      const host: Record<string, HostTensor> = {};
      for (const [k, v] of Object.entries(inputs)) host[k] = toHost(v);
      const res = await graph.run(host, { observe: observe ? () => true : undefined, profile: profile.on });
      r.lastTimings = res.timings;
      const out: Record<string, Tensor> = {};
      for (const [k, v] of Object.entries(res.outputs)) out[k] = fromHost(v, dtypes.get(k) ?? (v.dtype === "f32" ? "f32" : "i64"));
      if (observe) for (const [k, v] of Object.entries(res.observed)) observe(k, fromHost(v, v.dtype === "f32" ? "f32" : "i32"));
      return out;
    },
  };
  return r;
}
