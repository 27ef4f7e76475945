/** `lingc train <checkpoint> --data ids.safetensors --steps N --out DIR`: optimizer steps on one fixed batch, written as an HF checkpoint. */
import { LingcError } from "../../../ir/errors";
import { Tensor } from "../../../ir/tensor";
import { readAllSafetensors } from "../../../backends/weights/safetensors";
import { openSource } from "../../driver/source";
import { GRAPH, train, writeTrainedCheckpoint } from "../../driver/train";
import { int, str, UsageError } from "../args";
import type { Command } from "./command";
import { passesOption } from "./backend-options";
import { BACKEND_NAMES } from "../../../backends";

export const trainCommand: Command = {
  spec: {
    name: "train",
    summary: `Trains a checkpoint for some steps on one fixed batch with its ${GRAPH} graph (the loss with MTP, the folded backward, AdamW with Ling 2.0's settings and the expert-bias update) and writes the trained weights as an HF checkpoint. Prints the loss of each step.`,
    positionals: [{ name: "checkpoint", help: "a Ling 2.0 checkpoint folder (config.json + *.safetensors)" }],
    options: [
      { name: "data", value: "FILE", help: "a safetensors file with input_ids [B, S] (i64 or i32): the batch every step trains on", required: true },
      { name: "steps", value: "N", help: "how many optimizer steps", required: true },
      { name: "out", value: "DIR", help: "the folder to write the trained checkpoint to (must not exist)", required: true },
      { name: "lr", value: "X", help: "the learning rate (default 1e-3, constant)" },
      { name: "backend", value: "NAME", help: "which backend runs the steps (default interp; the only one for now)", choices: BACKEND_NAMES },
      { name: "passes", value: "LIST", help: "passes after autodiff and adamw (default: the target's), e.g. cse,dce,recompute{budget=50%}" },
    ],
    notes: ["example: lingc train tests/data/golden/ling-tiny --data tests/data/golden/ling-tiny/golden.safetensors --steps 50 --out out/tiny-trained"],
  },
  async run(args, io) {
    const dir = args.positionals[0]!;
    const steps = int(args, "steps", 1)!;
    const lrText = str(args, "lr") ?? "1e-3";
    const lr = Number(lrText);
    if (!(Number.isFinite(lr) && lr > 0)) throw new UsageError(`--lr ${lrText} is not a positive number`);
    const dataPath = str(args, "data")!;
    const data = readAllSafetensors(dataPath);
    const ids = data["input_ids"];
    if (!ids) throw new LingcError(`${dataPath}: no tensor input_ids (it has ${Object.keys(data).join(", ") || "none"})`);
    if (ids.shape.length !== 2 || (ids.dtype !== "i64" && ids.dtype !== "i32")) throw new LingcError(`${dataPath}: input_ids is ${ids.dtype}[${ids.shape}], expected i64 or i32 [B, S]`);
    const source = await openSource(dir);
    if (!source.weights) throw new LingcError(`${dir}: not a checkpoint folder (train needs weights to start from)`);
    const out = str(args, "out")!;
    const t0 = performance.now();
    let first: number | undefined;
    let last = NaN;
    const trained = await train(source, ids.dtype === "i64" ? ids : new Tensor("i64", ids.shape, ids.data), { steps, lr, backend: str(args, "backend") ?? "interp", passes: passesOption(args) }, (r) => {
      first ??= r.loss;
      last = r.loss;
      io.out(`step ${r.step} loss ${r.loss.toFixed(6)} (main ${r.lossMain.toFixed(6)}, mtp ${r.lossMtp.toFixed(6)}) grad_norm ${r.gradNorm.toFixed(4)}\n`);
    });
    writeTrainedCheckpoint(source.weights, out, trained);
    io.err(`trained ${steps} step(s) in ${((performance.now() - t0) / 1000).toFixed(1)} s: loss ${first?.toFixed(6)} -> ${last.toFixed(6)}; wrote ${out}\n`);
    return 0;
  },
};
