/** The pass-manager options shared by `compile` and `opt`. */
import { flag, str, type OptionSpec, type ParsedArgs } from "../args";
import type { CliIO } from "../io";
import type { PassRunOptions, PassTiming } from "../../passes/manager";

export const PASS_OPTIONS: OptionSpec[] = [
  { name: "print-after", value: "PASS", help: "print the IR after this pass (to stdout)" },
  { name: "print-after-all", help: "print the IR after every pass" },
  { name: "verify-each", help: "verify the IR after every pass" },
  { name: "time-passes", help: "report how long each pass took (to stderr)" },
];

export function passOptions(args: ParsedArgs, io: CliIO): PassRunOptions {
  const after = str(args, "print-after");
  return {
    verifyEach: flag(args, "verify-each"),
    printAfter: flag(args, "print-after-all") ? "all" : after ? new Set(after.split(",").map((s) => s.trim())) : undefined,
    print: (t) => io.out(t),
  };
}

export function reportTimings(timings: PassTiming[], io: CliIO): void {
  for (const t of timings) io.err(`pass ${t.name.padEnd(8)} ${t.ms.toFixed(2)} ms\n`);
}
