/**
 * `lingc run <model>`: runs one graph (default: the first, `forward` for a model) on a backend, with
 * its inputs read by name from a safetensors file, and writes every output (and observed values).
 */
import { dirname } from "node:path";
import { LingcError, listSome } from "../../../ir/errors";
import { isFloat } from "../../../ir/dtype";
import { Tensor, shapeToString } from "../../../ir/tensor";
import { scaleGridShape } from "../../../ir/quant";
import { tensor as tensorType } from "../../../ir/types";
import { bindConcrete } from "../../../ir/unify";
import { BACKEND_NAMES } from "../../../backends";
import type { GraphSignature } from "../../../backends/backend";
import { generationRole, tokensInput } from "../../../ir/generation";
import { readSafetensorsWhere, writeSafetensors } from "../../../backends/weights/safetensors";
import { loadModel } from "../../driver/load";
import { graphsFor, hasGraph, openSource } from "../../driver/source";
import { str } from "../args";
import { ensureDir, refuseInputAsOutput } from "../io";
import type { Command } from "./command";
import { DTYPE_OPTION, MODEL_POSITIONAL, PIPELINE_OPTIONS, sourceOptions, targetSettings, WEIGHTS_OPTION, passesOption } from "./backend-options";

/** Glob patterns (`*` matches anything) for --observe, each as a test. */
function globs(patterns: string | undefined): { text: string; test: (name: string) => boolean }[] {
  if (!patterns) return [];
  return patterns
    .split(",")
    .map((p) => p.trim())
    .filter(Boolean)
    .map((p) => {
      const re = new RegExp(`^${p.replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`);
      return { text: p, test: (name: string) => re.test(name) };
    });
}

const isIntType = (dt: string) => dt === "i64" || dt === "i32" || dt === "u8" || dt === "bool";

/**
 * The graph's inputs from a safetensors file, by name: every input must be there with the declared
 * rank, sizes that agree with the graph's symbols, and the declared dtype (integer inputs may come
 * as any integer type). Token ids of a generation graph must be in the vocabulary.
 */
export function readInputs(path: string, sig: GraphSignature): Record<string, Tensor> {
  // Only the graph's inputs are read: the file may hold other tensors (golden files do).
  const { tensors: file, names } = readSafetensorsWhere(path, (n) => sig.inputs.some((i) => i.name === n));
  const out: Record<string, Tensor> = {};
  for (const inp of sig.inputs) {
    const t = file[inp.name];
    if (!t) throw new LingcError(`${path}: no tensor "${inp.name}" (graph ${sig.name} takes ${listSome(sig.inputs.map((i) => `${i.name}: ${i.dtype}[${i.shape.join(", ")}]`))}; found: ${listSome(names) || "none"})`);
    if (t.rank !== inp.shape.length) throw new LingcError(`${path}: tensor "${inp.name}" has shape ${shapeToString(t.shape)}, graph ${sig.name} takes ${inp.dtype}[${inp.shape.join(", ")}]`);
    if (t.shape.some((d) => d === 0)) throw new LingcError(`${path}: tensor "${inp.name}" has shape ${shapeToString(t.shape)}: every axis must be at least 1`);
    if (isIntType(inp.dtype) && isIntType(t.dtype)) out[inp.name] = new Tensor(inp.dtype, t.shape, t.data);
    else if (t.dtype === inp.dtype) out[inp.name] = t;
    else throw new LingcError(`${path}: tensor "${inp.name}" has dtype ${t.dtype}, graph ${sig.name} takes ${inp.dtype}${isFloat(inp.dtype) && isFloat(t.dtype) ? " (convert it: lingc does not round inputs silently)" : ""}`);
  }
  const parse = (s: string) => (/^\d+$/.test(s) ? Number(s) : s);
  const b = bindConcrete(
    sig.inputs.map((i) => tensorType(i.dtype, i.shape.map(parse))),
    sig.inputs.map((i) => out[i.name]!.shape),
    sig.inputs.map((i) => `"${i.name}"`),
  );
  if ("problem" in b) throw new LingcError(`${path}: ${b.problem}`);
  // Token ids must be in the vocabulary (a generation graph's logits say its size; a model's `vocab`
  // attribute says it for any graph, the train graph's included).
  const role = generationRole(sig);
  const tokens = tokensInput(sig);
  const logits = role && sig.outputs.find((o) => o.name === role.logits);
  const V = sig.attrs["vocab"] !== undefined ? Number(sig.attrs["vocab"]) : logits ? Number(logits.shape[logits.shape.length - 1]) : undefined;
  const ids = tokens !== undefined ? out[tokens] : undefined;
  if (ids && V !== undefined) {
    for (let i = 0; i < ids.numel; i++) {
      const v = ids.data[i]!;
      if (v >= 0 && v < V) continue;
      const at: number[] = [];
      for (let d = ids.shape.length - 1, r = i; d >= 0; d--) {
        at.unshift(r % ids.shape[d]!);
        r = Math.floor(r / ids.shape[d]!);
      }
      throw new LingcError(`${path}: tensor "${tokens}" holds ${v} at [${at.join(", ")}], outside the vocabulary 0..${V - 1}`);
    }
  }
  return out;
}

export const run: Command = {
  spec: {
    name: "run",
    summary: "Runs a graph on a backend: reads its inputs by name from --input and writes every output (and observed values) to --out.",
    positionals: [MODEL_POSITIONAL],
    options: [
      { name: "backend", value: "NAME", help: "which backend runs the graph (default interp)", choices: BACKEND_NAMES },
      { name: "graph", value: "NAME", help: "which graph (default: the model's first, forward; a model also has train: the losses and grad.<weight>)" },
      { name: "input", value: "FILE", help: "safetensors file with the graph's inputs (for a model: input_ids, int64 [B, S])", required: true },
      { name: "out", value: "FILE", help: "safetensors file to write", required: true },
      { name: "observe", value: "PATTERNS", help: "also write these named internal values, e.g. 'hidden.*,model.layers.*.mlp.topk_idx'" },
      WEIGHTS_OPTION,
      DTYPE_OPTION,
      ...PIPELINE_OPTIONS,
    ],
  },
  async run(args, io) {
    const source = await openSource(args.positionals[0]!, str(args, "weights"), sourceOptions(args));
    const graph = str(args, "graph") ?? source.graphs[0]!;
    if (!hasGraph(source, graph)) throw new LingcError(`${source.label} has no graph '${graph}' (it has ${[...source.graphs, ...(source.onRequest ?? [])].join(", ")})`);
    const outPath = str(args, "out")!;
    refuseInputAsOutput(outPath, [str(args, "input"), source.weights, args.positionals[0]]);
    ensureDir(dirname(outPath));
    const { model, backend } = await loadModel({ source, backend: str(args, "backend") ?? "interp", settings: targetSettings(args), passes: passesOption(args), graphs: graphsFor(source, graph) });
    try {
      const inputs = readInputs(str(args, "input")!, model.signatures[graph]!);
      const patterns = globs(str(args, "observe"));
      const want = patterns.length ? (name: string) => patterns.some((p) => p.test(name)) : undefined;
      const observed: Record<string, Tensor> = {};
      const t0 = performance.now();
      const out = await model.graphs[graph]!.run(inputs, want ? (n, t) => want(n) && (observed[n] = t) : undefined);
      const ms = performance.now() - t0;
      const result: Record<string, Tensor> = { ...observed, ...out };
      // A pattern that matched nothing is a mistake (a typo, or a backend that exposes no internal values).
      const unmatched = patterns.filter((p) => !Object.keys(result).some(p.test));
      if (unmatched.length) throw new LingcError(`--observe ${unmatched.map((p) => `'${p.text}'`).join(", ")} matched no value of graph ${graph} that the ${backend} backend exposes`);
      // A scaled fp8 value is its fp8 data and, beside it, its scale grid (`<name>.scale`, f32).
      for (const [name, t] of Object.entries(result)) {
        if (t.scaled) result[`${name}.scale`] = new Tensor("f32", scaleGridShape(t.shape, t.scaled.layout.granularity), t.scaled.scales);
      }
      // A gradient of stacked expert weights (`grad.<...>.experts.*.<proj>`, [E, ...]) is written per
      // expert under the checkpoint's names, as the weights it belongs to are stored.
      for (const [name, t] of Object.entries(result)) {
        if (!name.startsWith("grad.") || !name.includes(".*.")) continue;
        const per = t.numel / t.shape[0]!;
        for (let e = 0; e < t.shape[0]!; e++) result[name.replace(".*.", `.${e}.`)] = new Tensor(t.dtype, t.shape.slice(1), t.data.slice(e * per, (e + 1) * per));
        delete result[name];
      }
      writeSafetensors(outPath, result);
      io.err(`ran ${graph} on ${backend} in ${ms.toFixed(0)} ms; wrote ${listSome(Object.keys(result).sort(), 12)} to ${outPath}\n`);
    } finally {
      model.close();
    }
    return 0;
  },
};
