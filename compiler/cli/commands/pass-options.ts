/** The pass-manager options shared by `compile` and `opt`. */
import { flag, str, type OptionSpec, type ParsedArgs } from "../args";
import type { CliIO } from "../io";
import type { PassRunOptions, PassTiming } from "../../passes/manager";

export const PASS_OPTIONS: OptionSpec[] = [
  { name: "print-before", value: "PASS", help: "print the IR before this pass (to stdout; a comma-separated list)" },
  { name: "print-after", value: "PASS", help: "print the IR after this pass (to stdout; a comma-separated list)" },
  { name: "print-before-all", help: "print the IR before every pass" },
  { name: "print-after-all", help: "print the IR after every pass" },
  { name: "verify-each", help: "verify the IR after every pass" },
  { name: "time-passes", help: "report how long each pass took (to stderr)" },
];

function passSet(args: ParsedArgs, one: string, all: string): ReadonlySet<string> | "all" | undefined {
  if (flag(args, all)) return "all";
  const v = str(args, one);
  return v ? new Set(v.split(",").map((s) => s.trim())) : undefined;
}

export function passOptions(args: ParsedArgs, io: CliIO): PassRunOptions {
  return {
    verifyEach: flag(args, "verify-each"),
    printBefore: passSet(args, "print-before", "print-before-all"),
    printAfter: passSet(args, "print-after", "print-after-all"),
    print: (t) => io.out(t),
    remark: (t) => io.err(`${t}\n`),
  };
}

export function reportTimings(timings: PassTiming[], io: CliIO): void {
  for (const t of timings) io.err(`pass ${t.name.padEnd(8)} ${t.ms.toFixed(2)} ms\n`);
}
