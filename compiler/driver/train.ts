/**
 * Training a checkpoint for some steps on one fixed batch (`lingc train`): the model's train-step
 * graph (forward, loss, backward, one AdamW step, the expert-bias update) compiled once, then run
 * step after step with the weights and the optimizer's moments of the previous step, all in memory;
 * the trained weights are written as an HF checkpoint (the source's other files copied).
 */
import { join, resolve } from "node:path";
import { getBackend } from "../../backends";
import type { BoundWeights } from "../../backends/backend";
import { Checkpoint } from "../../backends/weights/checkpoint";
import { writeSafetensors } from "../../backends/weights/safetensors";
import { LingcError } from "../../ir/errors";
import { Tensor } from "../../ir/tensor";
import type { TensorType } from "../../ir/types";
import { copyCheckpointExtras, writeFolderAtomic } from "./checkpoint-files";
import { bindWeights, compileProgram } from "./compile";
import { hasGraph, type Source } from "./source";

export interface TrainOptions {
  steps: number;
  lr: number;
  backend: string;
  /** Passes after the default ones (autodiff and adamw run first), e.g. a recompute plan. */
  passes?: string;
}

export interface StepReport {
  step: number;
  loss: number;
  lossMain: number;
  lossMtp: number;
  gradNorm: number;
}

export const GRAPH = "train-step";

/** Runs `steps` optimizer steps on `batch` (input_ids); returns the trained weights by full IR name. */
export async function train(source: Source, batch: Tensor, o: TrainOptions, onStep: (r: StepReport) => void): Promise<Map<string, Tensor>> {
  if (!hasGraph(source, GRAPH)) throw new LingcError(`${source.label} has no ${GRAPH} graph (a Ling 2.0 model or checkpoint has one)`);
  if (o.backend !== "interp") throw new LingcError(`lingc train runs on the interpreter only for now (--backend ${o.backend}: its weights would have to be rebound every step, which that backend cannot do yet)`);
  const backend = getBackend(o.backend);
  const { program } = await compileProgram({ source, target: backend.target, passes: o.passes, graphs: [GRAPH] });
  const initial = bindWeights(source, program);
  const state = new Map<string, Tensor>();
  const weights: BoundWeights = { get: (name: string, type: TensorType) => state.get(name) ?? initial.get(name, type) };
  try {
    const m = program.graphs[0]!;
    const entry = m.entry!;
    const moments: Record<string, Tensor> = {};
    for (const p of entry.params) {
      if (p.name!.startsWith("adam_")) moments[p.name!] = Tensor.zeros("f32", p.type.shape.map((d) => d.value!));
    }
    for (let step = 1; step <= o.steps; step++) {
      const loaded = await backend.load(program, weights);
      try {
        const out = await loaded.graphs[GRAPH]!.run({ input_ids: batch, lr: Tensor.from("f32", [1], [o.lr]), step: Tensor.from("f32", [1], [step]), ...moments });
        for (const [name, t] of Object.entries(out)) {
          if (name.startsWith("new.")) state.set(name.slice(4), t);
          else if (name.startsWith("adam_")) moments[name] = t;
        }
        const at = (k: string) => out[k]?.data[0] ?? NaN;
        const r = { step, loss: at("loss"), lossMain: at("loss_main"), lossMtp: at("loss_mtp"), gradNorm: at("grad_norm") };
        if (!Number.isFinite(r.loss) || !Number.isFinite(r.gradNorm)) throw new LingcError(`step ${step}: the loss or the gradient norm is not finite (loss ${r.loss}, grad_norm ${r.gradNorm}); try a smaller --lr`);
        onStep(r);
      } finally {
        loaded.close();
      }
    }
    return state;
  } finally {
    initial.checkpoint?.close();
  }
}

/**
 * Writes the source checkpoint with `trained` (full IR names; stacked experts `...experts.*...`
 * [E, ...] written per expert) replacing its tensors, in their stored dtypes, as one
 * model.safetensors in a new folder `dest`; the source's other files (config.json, tokenizer) are
 * copied. Written in a temporary folder renamed into place: a failure leaves nothing.
 */
export function writeTrainedCheckpoint(sourceDir: string, dest: string, trained: ReadonlyMap<string, Tensor>): void {
  if (resolve(dest) === resolve(sourceDir)) throw new LingcError(`--out ${dest} is the source checkpoint`);
  const ck = Checkpoint.open(sourceDir);
  try {
    writeFolderAtomic(dest, "trained checkpoint", (tmp) => {
      const tensors: Record<string, Tensor> = {};
      for (const name of ck.names()) tensors[name] = ck.read(name);
      for (const [name, t] of trained) {
        if (name.includes(".*.")) {
          const per = t.numel / t.shape[0]!;
          for (let e = 0; e < t.shape[0]!; e++) put(tensors, name.replace(".*.", `.${e}.`), new Tensor(t.dtype, t.shape.slice(1), t.data.slice(e * per, (e + 1) * per)));
        } else put(tensors, name, t);
      }
      writeSafetensors(join(tmp, "model.safetensors"), tensors);
      copyCheckpointExtras(ck.dir, tmp);
    });
  } finally {
    ck.close();
  }
}

/** Replaces a checkpoint tensor by a trained one, in the stored dtype. */
function put(tensors: Record<string, Tensor>, name: string, t: Tensor): void {
  const old = tensors[name];
  if (!old) throw new LingcError(`the trained weight ${name} is not in the checkpoint`);
  if (old.shape.join(",") !== t.shape.join(",")) throw new LingcError(`the trained weight ${name} is [${t.shape}], the checkpoint's [${old.shape}]`);
  if (t.dtype !== old.dtype && !(old.data instanceof Float32Array)) throw new LingcError(`the trained weight ${name} is ${t.dtype}, the checkpoint stores ${old.dtype}`);
  tensors[name] = t.dtype === old.dtype ? t : Tensor.from(old.dtype, t.shape, t.data);
}
