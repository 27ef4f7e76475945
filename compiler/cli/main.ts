/**
 * The `lingc` command line. Errors caused by the input are printed as one line
 * (`lingc: error: ...`) with a non-zero exit; anything else is an internal error, whose stack is
 * shown only with --debug.
 */
import "../../ir/ops";
import { LingcError } from "../../ir/errors";
import { helpText, parseArgs, UsageError } from "./args";
import type { Command } from "./commands/command";
import { compare } from "./commands/compare";
import { compile } from "./commands/compile";
import { generate } from "./commands/generate";
import { info } from "./commands/info";
import { init } from "./commands/init";
import { onnxBind } from "./commands/onnx-bind";
import { opt } from "./commands/opt";
import { quantize } from "./commands/quantize";
import { run } from "./commands/run";
import { trainCommand } from "./commands/train";
import { planCommand } from "./commands/plan";
import { view } from "./commands/view";
import { processIO, type CliIO } from "./io";

export const VERSION = "0.1.0";

const COMMANDS: Command[] = [info, compile, opt, run, generate, compare, init, quantize, onnxBind, trainCommand, planCommand, view];

function mainHelp(): string {
  const lines = [
    `lingc ${VERSION}: a compiler for Ling 2.0 mixture-of-experts models`,
    "",
    "usage: lingc <command> [arguments] [options]",
    "",
    "commands:",
    ...COMMANDS.map((c) => `  ${c.spec.name.padEnd(10)} ${c.spec.summary}`),
    "",
    "Run 'lingc <command> --help' for a command's arguments and options.",
  ];
  return lines.join("\n") + "\n";
}

/** Runs the CLI; returns the exit code (0 ok, 1 error in the input, 2 usage error, 70 internal error). */
export async function runCli(argv: readonly string[], io: CliIO = processIO): Promise<number> {
  const debug = argv.includes("--debug");
  const rest = argv.filter((a) => a !== "--debug");
  const name = rest[0];
  try {
    if (name === undefined || name === "--help" || name === "-h" || name === "help") {
      const c = COMMANDS.find((x) => x.spec.name === rest[1]);
      io.out(c ? helpText(c.spec) : mainHelp());
      return name === undefined ? 2 : 0;
    }
    if (name === "--version") {
      io.out(`lingc ${VERSION}\n`);
      return 0;
    }
    const cmd = COMMANDS.find((c) => c.spec.name === name);
    if (!cmd) throw new UsageError(`unknown command '${name}' (commands: ${COMMANDS.map((c) => c.spec.name).join(", ")}; see 'lingc --help')`);
    if (rest.includes("--help") || rest.includes("-h")) {
      io.out(helpText(cmd.spec));
      return 0;
    }
    return await cmd.run(parseArgs(cmd.spec, rest.slice(1)), io);
  } catch (e) {
    if (e instanceof LingcError) {
      io.err(`lingc: error: ${e.message}\n`);
      if (debug && e.stack) io.err(e.stack + "\n");
      return e instanceof UsageError ? 2 : 1;
    }
    io.err(`lingc: internal error: ${e instanceof Error ? e.message : String(e)}\n`);
    io.err(debug && e instanceof Error && e.stack ? e.stack + "\n" : "(run again with --debug for the stack trace, and please report it)\n");
    return 70;
  }
}
