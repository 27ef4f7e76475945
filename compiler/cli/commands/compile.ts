/** `lingc compile <model>`: traces a graph, runs the pass pipeline and writes the result. */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { LingcError } from "../../../ir/errors";
import type { Module } from "../../../ir/module";
import { parseModule } from "../../../ir/parse";
import { printModule } from "../../../ir/print";
import { verifyModule } from "../../../ir/verify";
import { emitOnnx, DEFAULT_OPSET } from "../../../backends/onnx/emit";
import { GPU_PIPELINE, resolveProfile } from "../../../backends/wgsl/backend";
import { compileWgsl } from "../../../backends/wgsl/compile";
import { formatKernelReport, kernelReport } from "../../analysis/kernel-report";
import { checkFusionNames } from "../../passes/fusion";
import { BACKEND_OPTIONS, backendOptions } from "./backend-options";
import { checkpointLayout, unboundLayout } from "../../../backends/onnx/weights";
import { bindCheckpoint } from "../../../models/checkpoint/bind";
import { Checkpoint } from "../../../models/checkpoint/checkpoint";
import { buildLing2, graphKind, GRAPHS } from "../../../models/ling2";
import { resolveModel, type ModelSpec } from "../../../models/resolve";
import { emitCuda } from "../../../backends/cuda/emit";
import { parsePassList, runPasses } from "../../passes/manager";
import { flag, int, str, type OptionSpec, type ParsedArgs } from "../args";
import { writeFileAtomic } from "../io";
import type { Command } from "./command";
import { passOptions, PASS_OPTIONS, reportTimings } from "./pass-options";

export const DEFAULT_PIPELINE = "cse,dce";
export const TARGETS = ["ir", "onnx", "wgsl", "cuda"] as const;

export const compile: Command = {
  spec: {
    name: "compile",
    summary: "Traces a model graph into the IR, runs the pass pipeline and writes the output for a target.",
    positionals: [{ name: "model", help: "a built-in config, a checkpoint folder, or an IR text (.lir)" }],
    options: [
      { name: "graph", value: "NAME", help: "which graph (default forward)", choices: GRAPHS },
      { name: "target", value: "NAME", help: "output kind (default ir: writes <out>/<graph>.lir)", choices: TARGETS },
      { name: "out", value: "DIR", help: "output folder", required: true },
      { name: "passes", value: "LIST", help: `comma-separated passes (default ${DEFAULT_PIPELINE}; ${GPU_PIPELINE} for wgsl and cuda; empty for none)` },
      { name: "opset", value: "N", help: `ONNX opset for --target onnx (default ${DEFAULT_OPSET})` },
      { name: "report", help: "print kernels per layer kind and bytes moved per token, before and after fusion" },
      ...BACKEND_OPTIONS,
      ...PASS_OPTIONS,
    ] as OptionSpec[],
    notes: [
      "examples: lingc compile ling-1t --graph forward --target ir --out out/ling-1t --print-after=cse",
      "          lingc compile ../shared/golden/ling-tiny --target onnx --out out/tiny   (weights: zero-copy references into the checkpoint)",
      "--target onnx writes <out>/<graph>.onnx. Compiled from a checkpoint folder, its external data points into that",
      "folder's safetensors files (load it with the folder as ONNX Runtime's external-data folder, see README);",
      "compiled from a built-in config, it is unbound until 'lingc onnx-bind' points it at a checkpoint.",
      "--target wgsl writes <out>/<graph>.wgsl.json: the WGSL kernels and launch plan (what the esbuild plugin embeds).",
      "--target cuda writes a CUDA source folder for both graphs (model.cu, the runtime, a Makefile for nvcc -arch=sm_90a).",
    ],
  },
  async run(args, io) {
    const target = str(args, "target") ?? "ir";
    const { m, checkpointDir, spec } = loadModule(args);
    const bopts = backendOptions(args);
    checkFusionNames(bopts.noFuse ?? []);
    const profile = target === "wgsl" || bopts.targetProfile || bopts.limits ? await resolveProfile(bopts) : undefined;
    const pipeline = str(args, "passes") ?? (target === "wgsl" || target === "cuda" ? GPU_PIPELINE : DEFAULT_PIPELINE);
    const timings = runPasses(m, parsePassList(pipeline), {
      ...passOptions(args, io),
      context: { disabledFusions: new Set(bopts.noFuse ?? []), maxWorkgroupBytes: profile?.maxComputeWorkgroupStorageSize, libraryMatmuls: target === "cuda" },
    });
    if (flag(args, "time-passes")) reportTimings(timings, io);
    if (flag(args, "report")) {
      const bindings = new Map([["B", 1], ["S", 1], ["P", 2048]]);
      io.out(formatKernelReport(m, kernelReport(m, bindings), bindings));
    }
    const out = str(args, "out")!;
    let path: string;
    if (target === "ir") {
      path = join(out, `${m.name}.lir`);
      writeFileAtomic(path, printModule(m));
    } else if (target === "cuda") {
      if (!spec) throw new LingcError("--target cuda compiles a model (a built-in config or a checkpoint folder), not an IR file");
      for (const [name, text] of Object.entries(emitCuda(spec.config, bopts.noFuse).files)) writeFileAtomic(join(out, name), text);
      path = `${out}/ (model.cu, runtime, Makefile: build with 'make' (nvcc -arch=sm_90a), run ./lingc_model --help)`;
    } else if (target === "wgsl") {
      path = join(out, `${m.name}.wgsl.json`);
      writeFileAtomic(path, JSON.stringify(compileWgsl(m, profile!), null, 1) + "\n");
    } else {
      path = join(out, `${m.name}.onnx`);
      const ck = checkpointDir ? Checkpoint.open(checkpointDir) : undefined;
      try {
        if (ck) bindCheckpoint([m], ck);
        writeFileAtomic(path, emitOnnx(m, { opset: int(args, "opset", 1), weights: ck ? checkpointLayout(ck) : unboundLayout() }).bytes);
      } finally {
        ck?.close();
      }
    }
    io.err(`wrote ${path}\n`);
    return 0;
  },
};

/** The module to compile: traced from a model (built-in or checkpoint folder), or read from a .lir file. */
function loadModule(args: ParsedArgs): { m: Module; checkpointDir?: string; spec?: ModelSpec } {
  const arg = args.positionals[0]!;
  if (arg.endsWith(".lir")) {
    if (str(args, "graph")) throw new LingcError("--graph does not apply to an IR file (the module names its graph)");
    let text: string;
    try {
      text = readFileSync(arg, "utf8");
    } catch (e) {
      throw new LingcError(`cannot read ${arg}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const m = parseModule(text, arg);
    verifyModule(m);
    return { m };
  }
  const spec = resolveModel(arg);
  return { m: buildLing2(spec.config, graphKind(str(args, "graph") ?? "forward")), checkpointDir: spec.checkpointDir, spec };
}
