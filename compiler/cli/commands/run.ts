/** `lingc run <checkpoint>`: runs the forward graph on input_ids from a safetensors file and writes the logits. */
import { LingcError } from "../../../ir/errors";
import { Tensor, shapeToString } from "../../../ir/tensor";
import { getBackend, BACKEND_NAMES } from "../../../backends";
import { readAllSafetensors, writeSafetensors } from "../../../models/checkpoint/safetensors";
import { resolveCheckpoint } from "../../../models/resolve";
import { str } from "../args";
import { ensureDir } from "../io";
import { dirname } from "node:path";
import type { Command } from "./command";
import { BACKEND_OPTIONS, backendOptions, CHECKPOINT_POSITIONAL } from "./backend-options";

/** Glob patterns (`*` matches anything) for --observe. */
function matcher(patterns: string | undefined): ((name: string) => boolean) | undefined {
  if (!patterns) return undefined;
  const res = patterns.split(",").map((p) => new RegExp(`^${p.trim().replace(/[.+?^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*")}$`));
  return (name) => res.some((r) => r.test(name));
}

/** Reads and checks `input_ids` (int64 or int32, [B, S], ids in the vocabulary). */
export function readInputIds(path: string, vocab: number): Tensor {
  const tensors = readAllSafetensors(path);
  const ids = tensors["input_ids"];
  if (!ids) throw new LingcError(`${path}: no tensor "input_ids" (found: ${Object.keys(tensors).join(", ") || "none"})`);
  if (ids.dtype !== "i64" && ids.dtype !== "i32") throw new LingcError(`${path}: tensor "input_ids" must be int64 (or int32), got ${ids.dtype}`);
  if (ids.rank !== 2 || ids.shape[0] === 0 || ids.shape[1] === 0) throw new LingcError(`${path}: tensor "input_ids" must be [batch, seq] with both > 0, got ${shapeToString(ids.shape)}`);
  for (let i = 0; i < ids.numel; i++) {
    const v = ids.data[i]!;
    if (!(v >= 0 && v < vocab)) throw new LingcError(`${path}: tensor "input_ids" holds ${v} at flat index ${i}, outside the vocabulary 0..${vocab - 1}`);
  }
  return new Tensor("i64", ids.shape, ids.data);
}

export const run: Command = {
  spec: {
    name: "run",
    summary: "Runs the forward graph on a checkpoint: reads input_ids [B, S] from --input and writes logits (and mtp_logits) as f32 to --out.",
    positionals: [CHECKPOINT_POSITIONAL],
    options: [
      { name: "backend", value: "NAME", help: "which backend runs the graph (default interp)", choices: BACKEND_NAMES },
      { name: "input", value: "FILE", help: "safetensors file with input_ids (int64 [B, S])", required: true },
      { name: "out", value: "FILE", help: "safetensors file to write", required: true },
      { name: "observe", value: "PATTERNS", help: "also write these named internal values, e.g. 'hidden.*,model.layers.*.mlp.topk_idx'" },
      ...BACKEND_OPTIONS,
    ],
  },
  async run(args, io) {
    const spec = resolveCheckpoint(args.positionals[0]!);
    const backend = getBackend(str(args, "backend") ?? "interp");
    const ids = readInputIds(str(args, "input")!, spec.config.vocabSize);
    const outPath = str(args, "out")!;
    ensureDir(dirname(outPath));
    const model = await backend.load(spec.config, spec.checkpointDir, backendOptions(args));
    try {
      const want = matcher(str(args, "observe"));
      const observed: Record<string, Tensor> = {};
      const t0 = performance.now();
      const out = await model.forward.run({ input_ids: ids }, want ? (n, t) => want(n) && (observed[n] = t) : undefined);
      const ms = performance.now() - t0;
      const result: Record<string, Tensor> = { ...observed };
      for (const [k, v] of Object.entries(out)) if (k === "logits" || k.startsWith("mtp_logits")) result[k] = v;
      writeSafetensors(outPath, result);
      io.err(`ran forward on ${backend.name} in ${ms.toFixed(0)} ms; wrote ${Object.keys(result).sort().join(", ")} to ${outPath}\n`);
    } finally {
      model.close();
    }
    return 0;
  },
};
