/** `lingc plan <model> --stages N [--train] [--vpp V] [--json]`: a pipeline layout and its predicted balance. */
import { LingcError } from "../../../ir/errors";
import { CUDA_SM90A } from "../../../ir/target/cuda";
import { openSource } from "../../driver/source";
import { fp8Settings } from "../../driver/compile";
import { fp8PassText, type TargetSettings } from "../../driver/targets";
import { parsePipeline, runPasses } from "../../passes/manager";
import { planPipeline, type LayoutReport } from "../../passes/stages-plan";
import { flag, int, str, UsageError } from "../args";
import type { Command } from "./command";
import { DTYPE_OPTION, MODEL_POSITIONAL, PIPELINE_OPTIONS, sourceOptions } from "./backend-options";

const gb = (b: number) => `${(b / 1e9).toFixed(1)} GB`;

export const planCommand: Command = {
  spec: {
    name: "plan",
    summary: "Cuts a model into pipeline stages balanced by predicted time (the exact min-max partition of its layer calls, H200 rates) and prints each stage's layers, weights, memory and time next to the uniform layout.",
    positionals: [MODEL_POSITIONAL],
    options: [
      { name: "stages", value: "N", help: "pipeline stages (devices)", required: true },
      { name: "vpp", value: "V", help: "virtual stages per device (interleaved schedule; default 1)" },
      { name: "train", help: "plan a training step (forward, backward and full recompute; weights with gradients and AdamW state)" },
      { name: "seq", value: "S", help: "sequence length (default 4096)" },
      { name: "batch", value: "B", help: "micro-batch (default 1)" },
      { name: "memory-limit", value: "GB", help: "bytes a stage may hold, in GB (default: no limit; the plan prints each stage's)" },
      { name: "json", help: "print the plan as JSON" },
      DTYPE_OPTION,
      ...PIPELINE_OPTIONS.filter((o) => o.name === "quantize" || o.name === "activation-scheme"),
    ],
    notes: ["example: lingc plan ling-1t --stages 21 --vpp 2 --train"],
  },
  async run(args, io) {
    const stages = int(args, "stages", 1)!;
    const virtual = int(args, "vpp", 1) ?? 1;
    const train = flag(args, "train");
    const limitText = str(args, "memory-limit");
    const memoryLimit = limitText === undefined ? undefined : Number(limitText) * 1e9;
    if (memoryLimit !== undefined && !(memoryLimit > 0)) throw new UsageError(`--memory-limit ${limitText} is not a positive number of GB`);
    const source = await openSource(args.positionals[0]!, undefined, sourceOptions(args));
    const m = source.module(train ? "train" : "forward");
    // An FP8 model (its checkpoint's quantization_config, or --quantize fp8) is planned as it runs:
    // its projections' weights and GEMMs in FP8.
    const { fp8 } = fp8Settings(source, { quantize: str(args, "quantize") as TargetSettings["quantize"], activationScheme: str(args, "activation-scheme") as TargetSettings["activationScheme"] });
    if (fp8) runPasses(m, parsePipeline(fp8PassText(fp8)));
    if (!m.entry) throw new LingcError(`${source.label}: the graph has no entry function`);
    const sizes = new Map([
      ["B", int(args, "batch", 1) ?? 1],
      ["S", int(args, "seq", 1) ?? 4096],
    ]);
    const r = planPipeline(m, { stages, virtual, train, sizes, rates: CUDA_SM90A.rates, memoryLimit, trainFactor: 4 });
    if (flag(args, "json")) {
      io.out(`${JSON.stringify({ model: source.label, stages, vpp: virtual, train, batch: sizes.get("B"), seq: sizes.get("S"), rates: CUDA_SM90A.rates.source, ...r }, null, 1)}\n`);
      return 0;
    }
    const what = `${source.label}${fp8 ? " (FP8 projections)" : ""}, ${train ? "training" : "prefill"} of ${sizes.get("B")}x${sizes.get("S")}, ${stages} stages${virtual > 1 ? ` x ${virtual} virtual` : ""}`;
    io.out(`${what}: ${r.units.length} schedule units, planned in ${r.ms.toFixed(0)} ms at the H200's rates (bf16 GEMM ${(CUDA_SM90A.rates.gemmFlops["bf16"]! / 1e12).toFixed(0)} TFLOP/s, memory ${(CUDA_SM90A.rates.memoryBandwidth / 1e9).toFixed(0)} GB/s, link ${(CUDA_SM90A.rates.linkBandwidth / 1e9).toFixed(0)} GB/s; their sources in --json)\n`);
    const show = (l: LayoutReport) => {
      io.out(`\n${l.name}: bottleneck ${(l.max * 1e3).toFixed(2)} ms, imbalance (max/mean) ${l.imbalance.toFixed(3)}\n`);
      l.stages.forEach((s, i) => {
        const names = s.units.length > 4 ? `${s.units[0]} .. ${s.units[s.units.length - 1]} (${s.units.length} units)` : s.units.join(", ") || "(empty)";
        io.out(`  stage ${String(i).padStart(2)}  ${(s.seconds * 1e3).toFixed(2).padStart(9)} ms  weights ${gb(s.weightBytes).padStart(9)}  memory ${gb(s.memoryBytes).padStart(9)}  ${names}\n`);
      });
    };
    show(r.plan);
    for (const other of [r.uniform, r.suggested]) {
      if (!other) continue;
      show(other);
      io.out(`  -> lingc's plan is ${((other.max / r.plan.max - 1) * 100).toFixed(1)}% faster at the bottleneck than this layout\n`);
    }
    if (r.lowerBound !== undefined) io.out(`\nlower bound on any layout's bottleneck: ${(r.lowerBound * 1e3).toFixed(2)} ms; lingc's plan is within ${((r.plan.max / r.lowerBound - 1) * 100).toFixed(2)}% of it\n`);
    return 0;
  },
};
