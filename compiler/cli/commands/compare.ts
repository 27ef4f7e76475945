/**
 * `lingc compare <checkpoint> --backends a,b`: runs the forward graph on two backends, and for every
 * named IR value both expose prints the max abs and relative error, naming the first value (in
 * execution order) that exceeds the tolerance. Exit code 3 when one does.
 */
import { LingcError } from "../../../ir/errors";
import { ulpOf } from "../../../ir/numerics";
import type { Tensor } from "../../../ir/tensor";
import { BACKEND_NAMES } from "../../../backends";
import { loadModel } from "../../driver/load";
import { graphsFor, hasGraph, openSource } from "../../driver/source";
import { str, UsageError } from "../args";
import type { Command } from "./command";
import { DTYPE_OPTION, MODEL_POSITIONAL, PIPELINE_OPTIONS, sourceOptions, targetSettings, WEIGHTS_OPTION, passesOption } from "./backend-options";
import { readInputs } from "./run";

export interface ValueDiff {
  name: string;
  shape: readonly number[];
  maxAbs: number;
  maxRel: number;
  /** bf16 and f16 values: the largest difference in units in the last place of the reference value's largest element. */
  maxUlps?: number;
  over: boolean;
}

/** Without --tolerance: bf16 and f16 values within this many ulps (summation order moves a result by one; its inputs' ulps add), the others within DEFAULT_ABS. */
export const DEFAULT_ULPS = 2;
export const DEFAULT_ABS = 1e-4;

/**
 * Each value's largest difference between a and b. `tolerance` (absolute) applies to every value;
 * without it, bf16 and f16 values are held to DEFAULT_ULPS ulps of the reference (a's) value's largest
 * element and the others to DEFAULT_ABS: an absolute 1e-4 says nothing about bf16 arithmetic, whose
 * ulp at 1 is 2^-7.
 */
export function diffValues(order: string[], a: Record<string, Tensor>, b: Record<string, Tensor>, tolerance?: number): ValueDiff[] {
  const out: ValueDiff[] = [];
  for (const name of order) {
    const x = a[name];
    const y = b[name];
    if (!x || !y) continue;
    if (x.shape.join(",") !== y.shape.join(",")) {
      out.push({ name, shape: x.shape, maxAbs: Infinity, maxRel: Infinity, over: true });
      continue;
    }
    const counted = x.dtype === y.dtype && (x.dtype === "bf16" || x.dtype === "f16");
    let maxAbs = 0;
    let scale = 0;
    for (let i = 0; i < x.numel; i++) {
      const d = Math.abs(x.data[i]! - y.data[i]!);
      if (!(d <= maxAbs)) maxAbs = d;
      scale = Math.max(scale, Math.abs(x.data[i]!));
    }
    const maxRel = maxAbs === 0 ? 0 : maxAbs / Math.max(scale, 1e-30);
    // In ulps of the value's largest element: a sum that cancels to near zero is as far off as its terms were.
    const maxUlps = counted ? maxAbs / ulpOf(scale, x.dtype)! : undefined;
    const over = tolerance !== undefined ? !(maxAbs <= tolerance) : maxUlps !== undefined ? !(maxUlps <= DEFAULT_ULPS) : !(maxAbs <= DEFAULT_ABS);
    out.push({ name, shape: x.shape, maxAbs, maxRel, ...(maxUlps !== undefined ? { maxUlps } : {}), over });
  }
  return out;
}

export const compare: Command = {
  spec: {
    name: "compare",
    summary: "Runs a graph on two backends and compares every named value both expose (max abs and relative error), naming the first that exceeds the tolerance.",
    positionals: [MODEL_POSITIONAL],
    options: [
      { name: "backends", value: "A,B", help: `two backends (from ${BACKEND_NAMES.join(", ")}); the first is the reference`, required: true },
      { name: "graph", value: "NAME", help: "which graph (default: the model's first, forward; a model also has train: the losses and grad.<weight>)" },
      { name: "input", value: "FILE", help: "safetensors file with the graph's inputs (for a model: input_ids, int64 [B, S])", required: true },
      { name: "tolerance", value: "X", help: "max abs error allowed, for every value (default: 1e-4, and for bf16 and f16 values 2 ulps of the first backend's largest element)" },
      WEIGHTS_OPTION,
      DTYPE_OPTION,
      ...PIPELINE_OPTIONS,
    ],
    notes: ["exit code: 0 when every shared value is within the tolerance, 3 when one is not"],
  },
  async run(args, io) {
    const names = str(args, "backends")!.split(",").map((s) => s.trim());
    if (names.length !== 2) throw new UsageError(`--backends needs two backends separated by a comma, got '${str(args, "backends")}'`);
    const tolText = str(args, "tolerance");
    const tolerance = tolText === undefined ? undefined : Number(tolText);
    if (tolerance !== undefined && !(tolerance >= 0)) throw new UsageError(`--tolerance must be a non-negative number, got '${tolText}'`);
    const source = await openSource(args.positionals[0]!, str(args, "weights"), sourceOptions(args));
    const graph = str(args, "graph") ?? source.graphs[0]!;
    if (!hasGraph(source, graph)) throw new LingcError(`${source.label} has no graph '${graph}' (it has ${[...source.graphs, ...(source.onRequest ?? [])].join(", ")})`);
    const results: Record<string, Tensor>[] = [];
    const order: string[] = [];
    const settings = targetSettings(args);
    if (settings.prefer?.length && !names.includes("cuda")) throw new UsageError(`--prefer chooses CUDA kernels; neither of --backends ${names.join(",")} is cuda`);
    for (const [i, name] of names.entries()) {
      // --prefer is CUDA's kernel choice: comparing interp with cuda under it means the CUDA side's.
      const own = name === "cuda" ? settings : { ...settings, prefer: undefined };
      const { model } = await loadModel({ source, backend: name, settings: own, passes: passesOption(args), graphs: graphsFor(source, graph) });
      try {
        const inputs = readInputs(str(args, "input")!, model.signatures[graph]!);
        const seen: Record<string, Tensor> = {};
        const out = await model.graphs[graph]!.run(inputs, (n, t) => {
          seen[n] = t;
          if (i === 0) order.push(n);
        });
        for (const [k, v] of Object.entries(out)) if (!seen[k]) (seen[k] = v), i === 0 && order.push(k);
        results.push(seen);
      } finally {
        model.close();
      }
    }
    const diffs = diffValues(order, results[0]!, results[1]!, tolerance);
    if (diffs.length === 0) throw new LingcError(`${names[0]} and ${names[1]} expose no value in common`);
    const w = Math.max(...diffs.map((d) => d.name.length));
    const ulps = diffs.some((d) => d.maxUlps !== undefined);
    io.out(`${"value".padEnd(w)}  ${"shape".padEnd(16)}  ${"max abs".padStart(10)}  ${"max rel".padStart(10)}${ulps ? `  ${"max ulps".padStart(9)}` : ""}\n`);
    for (const d of diffs) {
      const u = ulps ? `  ${(d.maxUlps === undefined ? "-" : d.maxUlps.toFixed(1)).padStart(9)}` : "";
      io.out(`${d.name.padEnd(w)}  ${`[${d.shape.join(", ")}]`.padEnd(16)}  ${d.maxAbs.toExponential(2).padStart(10)}  ${d.maxRel.toExponential(2).padStart(10)}${u}${d.over ? "  OVER" : ""}\n`);
    }
    const rule = tolerance !== undefined ? `${tolerance}` : ulps ? `${DEFAULT_ABS} (bf16 and f16 values: ${DEFAULT_ULPS} ulps)` : `${DEFAULT_ABS}`;
    const first = diffs.find((d) => d.over);
    if (first) {
      const by = first.maxUlps !== undefined && tolerance === undefined ? `${first.maxUlps.toFixed(1)} ulps` : `max abs ${first.maxAbs.toExponential(3)}`;
      io.out(`first value over tolerance ${rule}: ${first.name} (${by})\n`);
      return 3;
    }
    io.out(`all ${diffs.length} values ${names[0]} and ${names[1]} share are within ${rule}\n`);
    return 0;
  },
};
