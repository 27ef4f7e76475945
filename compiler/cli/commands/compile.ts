/** `lingc compile <model>`: runs the target's pipeline on the model's graphs and writes what the target's backend emits. */
import { chmodSync } from "node:fs";
import { join } from "node:path";
import { LingcError } from "../../../ir/errors";
import { printModule } from "../../../ir/print";
import { ProfileRegistry } from "../../../ir/target";
import { emitOnnx, DEFAULT_OPSET } from "../../../backends/onnx/emit";
import { isStaged, splitStages } from "../../../ir/stages";
import type { Module } from "../../../ir/module";
import { compileProgramWgsl } from "../../../backends/wgsl/backend";
import { emitCuda } from "../../../backends/cuda/emit";
import { checkpointLayout, unboundLayout } from "../../../backends/onnx/weights";
import { bindCheckpoint } from "../../../backends/weights/bind";
import { Checkpoint } from "../../../backends/weights/checkpoint";
import { formatKernelReport, kernelReport } from "../../analysis/kernel-report";
import { compileProgram, fp8Settings, pipelineFor } from "../../driver/compile";
import { openSource } from "../../driver/source";
import { TARGETS, type Target } from "../../driver/targets";
import { GRAPHS } from "../../../models/ling2";
import { flag, int, str, UsageError, type OptionSpec } from "../args";
import { writeFileAtomic } from "../io";
import type { Command } from "./command";
import { DTYPE_OPTION, PIPELINE_OPTIONS, sourceOptions, targetSettings, passesOption } from "./backend-options";
import { passOptions, PASS_OPTIONS, reportTimings } from "./pass-options";

export const compile: Command = {
  spec: {
    name: "compile",
    summary: "Traces a model graph (or reads an IR text), runs the target's pass pipeline and writes the output for the target.",
    positionals: [{ name: "model", help: "a built-in config, a checkpoint folder, or an IR text (.lir)", optional: true }],
    options: [
      { name: "graph", value: "NAME", help: "which graph of a model (default: forward; cuda: forward, prefill and decode; train: the training loss and, by the autodiff pass, its gradients)", choices: GRAPHS },
      { name: "target", value: "NAME", help: "output kind (default ir: writes <out>/<graph>.lir)", choices: TARGETS },
      { name: "out", value: "DIR", help: "output folder" },
      { name: "print-pipeline", help: "print the pipeline the target runs (with these options) and stop" },
      { name: "opset", value: "N", help: `ONNX opset for --target onnx (default ${DEFAULT_OPSET})` },
      {
        name: "onnx-bf16",
        value: "MODE",
        help: "--target onnx: native keeps bf16 tensors (for a runtime with bf16 kernels); emulate holds them in f32 and rounds each computed bf16 result to bf16, so that the model runs on ONNX Runtime's CPU provider (bf16 inputs and outputs become f32) (default native)",
        choices: ["native", "emulate"],
      },
      { name: "report", help: "print kernels per layer kind and bytes moved per token, before and after fusion" },
      { name: "draft", value: "HEAD", help: "--target cuda: also the draft graph (the MTP layer), so the program generates with --draft mtp", choices: ["mtp"] },
      DTYPE_OPTION,
      ...PIPELINE_OPTIONS,
      ...PASS_OPTIONS,
    ] as OptionSpec[],
    notes: [
      "examples: lingc compile ling-1t --graph forward --target ir --out out/ling-1t --print-after=cse",
      "          lingc compile ling-tiny --target cuda --print-pipeline",
      "          lingc compile out/ling-tiny/forward.lir --target wgsl --out out/tiny-wgsl   (an IR text compiles to every target)",
      "--target onnx writes <out>/<graph>.onnx. Compiled from a checkpoint folder, its external data points into that",
      "folder's safetensors files (load it with the folder as ONNX Runtime's external-data folder, see README);",
      "compiled from a built-in config, it is unbound until 'lingc onnx-bind' points it at a checkpoint.",
      "--target wgsl writes <out>/<graph>.wgsl.json: the WGSL kernels and launch plan (what the esbuild plugin embeds).",
      "--target cuda writes a CUDA source folder (model.cu, the runtime, a Makefile for nvcc); from a model, its forward, prefill and decode graphs",
      "unless --graph names one.",
    ],
  },
  async run(args, io) {
    const target = (str(args, "target") ?? "ir") as Target;
    const settings = targetSettings(args);
    const passes = passesOption(args);
    if (flag(args, "print-pipeline")) {
      // With a model, its FP8 layout (an FP8 checkpoint, --quantize fp8) adds the fp8 pass, as compiling it would.
      const model = args.positionals[0];
      const folded = model === undefined ? settings : fp8Settings(await openSource(model, undefined, sourceOptions(args)), settings);
      const { text } = await pipelineFor(target, folded, passes, new ProfileRegistry());
      io.out(`${text}\n`);
      return 0;
    }
    const modelArg = args.positionals[0];
    if (modelArg === undefined) throw new UsageError("'lingc compile' needs <model> (see 'lingc compile --help')");
    const out = str(args, "out");
    if (out === undefined) throw new UsageError("'lingc compile' needs --out DIR (see 'lingc compile --help')");
    const source = await openSource(modelArg, undefined, sourceOptions(args));
    const graphName = str(args, "graph");
    if (graphName && modelArg.endsWith(".lir")) throw new LingcError("--graph does not apply to an IR file (the module names its graph)");
    if (str(args, "onnx-bf16") !== undefined && target !== "onnx") throw new UsageError("--onnx-bf16 chooses how an ONNX model holds bf16 tensors: give it with --target onnx");
    if (str(args, "draft") !== undefined && (target !== "cuda" || graphName)) throw new UsageError("--draft mtp adds the draft graph to a CUDA program's graphs: give it with --target cuda and without --graph");
    const graphs = graphName ? [graphName] : target === "cuda" ? [...source.graphs, ...(str(args, "draft") ? ["draft"] : [])] : [source.graphs[0]!];
    const { program, timings } = await compileProgram({ source, graphs, target, settings, passes, passRun: passOptions(args, io) });
    if (flag(args, "time-passes")) reportTimings(timings, io);
    if (flag(args, "report")) {
      for (const m of program.graphs) {
        // Per token of a decode step with a 2048-token cache; a symbol of another name (an IR file's
        // own) at 1, shown in the report's header.
        const bindings = new Map([["B", 1], ["S", 1], ["P", 2048]]);
        for (const v of m.entry?.params ?? []) for (const d of v.type.shape) for (const x of d.symbols()) if (!bindings.has(x)) bindings.set(x, 1);
        io.out(formatKernelReport(m, kernelReport(m, bindings), bindings));
      }
    }
    const written: string[] = [];
    const write = (path: string, data: string | Uint8Array) => {
      writeFileAtomic(path, data);
      written.push(path);
    };
    if (target === "ir") {
      for (const m of program.graphs) write(join(out, `${m.name}.lir`), printModule(m));
    } else if (target === "cuda") {
      const { files } = emitCuda(program);
      for (const [name, text] of Object.entries(files)) writeFileAtomic(join(out, name), text);
      if (files["launch.sh"]) chmodSync(join(out, "launch.sh"), 0o755);
      const stages = Object.keys(files).filter((f) => f.startsWith("model.stage")).length;
      written.push(
        stages
          ? `${out}/ (model.stage0..${stages - 1}.cu, runtime, Makefile, launch.sh: build with 'make' (nvcc), run one process per stage, e.g. torchrun --nproc-per-node ${stages} --no-python ./launch.sh run ...)`
          : `${out}/ (model.cu, runtime, Makefile: build with 'make' (nvcc), run ./lingc_model --help)`,
      );
    } else if (target === "wgsl") {
      for (const a of compileProgramWgsl(program)) {
        write(join(out, `${a.graph}.wgsl.json`), JSON.stringify(a, null, 1) + "\n");
        written[written.length - 1] += ` (weights on the GPU: ${(a.weightBytes / 1e6).toFixed(2)} MB)`;
      }
    } else {
      const ck = source.weights ? Checkpoint.open(source.weights) : undefined;
      try {
        if (ck) bindCheckpoint(program.graphs, ck);
        const emit = (m: Module) => emitOnnx(m, { opset: int(args, "opset", 1), weights: ck ? checkpointLayout(ck) : unboundLayout(), emulateBf16: str(args, "onnx-bf16") === "emulate" }).bytes;
        for (const m of program.graphs) {
          if (!isStaged(m)) {
            write(join(out, `${m.name}.onnx`), emit(m));
            continue;
          }
          // One model per pipeline stage, and the chain that feeds them (inputs by name).
          const chain = splitStages(m);
          for (const st of chain.stages) write(join(out, `${st.module.name}.onnx`), emit(st.module));
          const spec = { stages: chain.stages.map((st) => ({ model: `${st.module.name}.onnx`, inputs: Object.fromEntries(st.inputs.map((src, j) => [st.module.entry!.params[j]!.name!, src])) })), outputs: chain.outputs };
          write(join(out, `${m.name}.stages.json`), `${JSON.stringify(spec, null, 1)}\n`);
        }
      } finally {
        ck?.close();
      }
    }
    io.err(`wrote ${written.join(", ")}\n`);
    return 0;
  },
};
