/** `lingc opt <file.lir>`: parses an IR text, verifies it, runs passes and prints the result (like mlir-opt). */
import { readFileSync } from "node:fs";
import { LingcError } from "../../../ir/errors";
import { parseModule } from "../../../ir/parse";
import { printModule } from "../../../ir/print";
import { verifyModule } from "../../../ir/verify";
import { parsePipeline, runPasses } from "../../passes/manager";
import { flag, str } from "../args";
import { refuseInputAsOutput, writeFileAtomic } from "../io";
import type { Command } from "./command";
import { passesOption } from "./backend-options";
import { passOptions, PASS_OPTIONS, reportTimings } from "./pass-options";

export const opt: Command = {
  spec: {
    name: "opt",
    summary: "Parses and verifies an IR text (.lir), runs passes on it and prints the result.",
    positionals: [{ name: "file.lir", help: "the IR text ('-' reads stdin)" }],
    options: [
      { name: "passes", value: "LIST", help: "the pipeline to run, e.g. 'cse,dce,fusion{profile=cuda-sm90a}' (default: none)" },
      { name: "out", value: "FILE", help: "write the result here instead of stdout" },
      ...PASS_OPTIONS,
    ],
  },
  async run(args, io) {
    const file = args.positionals[0]!;
    let text: string;
    try {
      text = readFileSync(file === "-" ? 0 : file, "utf8");
    } catch (e) {
      throw new LingcError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const m = parseModule(text, file === "-" ? "<stdin>" : file);
    verifyModule(m);
    const timings = runPasses(m, parsePipeline(passesOption(args) ?? ""), passOptions(args, io));
    if (flag(args, "time-passes")) reportTimings(timings, io);
    const out = printModule(m);
    const path = str(args, "out");
    if (path) refuseInputAsOutput(path, [file === "-" ? undefined : file]);
    if (path) writeFileAtomic(path, out);
    else io.out(out);
    return 0;
  },
};
