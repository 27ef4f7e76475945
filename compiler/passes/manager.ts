/**
 * The pass manager: runs a pipeline of passes in order, optionally verifying the module after each
 * one, timing each one, and printing the module before or after any (or every) pass
 * (`--print-before=fusion`, `--print-after-all`), as MLIR's pass manager does. Analyses are cached
 * across passes and dropped after each pass except those the pass preserves.
 */
import { AnalysisManager } from "../../ir/analysis";
import { LingcError } from "../../ir/errors";
import type { Module } from "../../ir/module";
import { printModule } from "../../ir/print";
import { ProfileRegistry } from "../../ir/target";
import { verifyModule } from "../../ir/verify";
import type { PassInstance } from "./pass";
import { instanceText } from "./pipeline";
import { getPass } from "./registry";

export { parsePipeline, pipelineText } from "./pipeline";
export { getPass, PASSES } from "./registry";

export interface PassRunOptions {
  verifyEach?: boolean;
  /** Pass names before which to print the module, or "all". */
  printBefore?: ReadonlySet<string> | "all";
  /** Pass names after which to print the module, or "all". */
  printAfter?: ReadonlySet<string> | "all";
  /** Where printed modules go (default: stdout). */
  print?: (text: string) => void;
  /** Target profiles the passes may name (default: the built-in ones). */
  profiles?: ProfileRegistry;
  /** Where passes' remarks go (what a pass decided; default: nowhere). */
  remark?: (text: string) => void;
  /** Sees the module before the first pass (`stage` undefined) and after each pass (its text), e.g. for `lingc view`'s timeline. */
  observe?: (m: Module, stage: string | undefined, ms: number) => void;
}

export interface PassTiming {
  name: string;
  ms: number;
}

function checkNames(flag: string, names: ReadonlySet<string> | "all" | undefined, passes: readonly PassInstance[]): void {
  if (!names || names === "all") return;
  for (const name of names) {
    getPass(name);
    if (!passes.some((p) => p.pass.name === name)) {
      throw new LingcError(`${flag}=${name}: pass '${name}' is not in this pipeline (${passes.map((p) => p.pass.name).join(", ") || "no passes"})`);
    }
  }
}

export function runPasses(m: Module, passes: readonly PassInstance[], opts: PassRunOptions = {}): PassTiming[] {
  const print = opts.print ?? ((t: string) => process.stdout.write(t));
  checkNames("--print-before", opts.printBefore, passes);
  checkNames("--print-after", opts.printAfter, passes);
  const ctx = { analyses: new AnalysisManager(m), profiles: opts.profiles ?? new ProfileRegistry(), remark: opts.remark };
  const wants = (set: ReadonlySet<string> | "all" | undefined, name: string) => set === "all" || (set?.has(name) ?? false);
  const timings: PassTiming[] = [];
  opts.observe?.(m, undefined, 0);
  for (const p of passes) {
    if (wants(opts.printBefore, p.pass.name)) print(`// ----- IR before ${instanceText(p)} -----\n${printModule(m)}`);
    const t0 = performance.now();
    p.pass.run(m, p.options, ctx);
    timings.push({ name: p.pass.name, ms: performance.now() - t0 });
    ctx.analyses.invalidate(p.pass.preserves ?? []);
    if (opts.verifyEach) {
      try {
        verifyModule(m);
      } catch (e) {
        if (e instanceof LingcError) throw new LingcError(`the module is invalid after pass '${p.pass.name}': ${e.message}`);
        throw e;
      }
    }
    if (wants(opts.printAfter, p.pass.name)) print(`// ----- IR after ${instanceText(p)} -----\n${printModule(m)}`);
    opts.observe?.(m, instanceText(p), timings[timings.length - 1]!.ms);
  }
  return timings;
}
