/** `lingc compile <model>`: traces a graph, runs the pass pipeline and writes the result. */
import { join } from "node:path";
import { NotImplementedError } from "../../../ir/errors";
import { printModule } from "../../../ir/print";
import { buildLing2, graphKind, GRAPHS } from "../../../models/ling2";
import { resolveModel } from "../../../models/resolve";
import { parsePassList, runPasses } from "../../passes/manager";
import { flag, str, type OptionSpec } from "../args";
import { writeFileAtomic } from "../io";
import type { Command } from "./command";
import { passOptions, PASS_OPTIONS, reportTimings } from "./pass-options";

export const DEFAULT_PIPELINE = "cse,dce";
export const TARGETS = ["ir", "onnx", "wgsl", "cuda"] as const;

export const compile: Command = {
  spec: {
    name: "compile",
    summary: "Traces a model graph into the IR, runs the pass pipeline and writes the output for a target.",
    positionals: [{ name: "model", help: "a built-in config or a checkpoint folder" }],
    options: [
      { name: "graph", value: "NAME", help: "which graph (default forward)", choices: GRAPHS },
      { name: "target", value: "NAME", help: "output kind (default ir: writes <out>/<graph>.lir)", choices: TARGETS },
      { name: "out", value: "DIR", help: "output folder", required: true },
      { name: "passes", value: "LIST", help: `comma-separated passes (default ${DEFAULT_PIPELINE}; empty for none)` },
      ...PASS_OPTIONS,
    ] as OptionSpec[],
    notes: ["example: lingc compile ling-1t --graph forward --target ir --out out/ling-1t --print-after=cse"],
  },
  async run(args, io) {
    const graph = graphKind(str(args, "graph") ?? "forward");
    const target = str(args, "target") ?? "ir";
    if (target !== "ir") throw new NotImplementedError(`--target ${target} (this build emits --target ir)`);
    const passes = parsePassList(str(args, "passes") ?? DEFAULT_PIPELINE);
    const { config } = resolveModel(args.positionals[0]!);
    const m = buildLing2(config, graph);
    const timings = runPasses(m, passes, passOptions(args, io));
    if (flag(args, "time-passes")) reportTimings(timings, io);
    const path = join(str(args, "out")!, `${graph}.lir`);
    writeFileAtomic(path, printModule(m));
    io.err(`wrote ${path}\n`);
    return 0;
  },
};
