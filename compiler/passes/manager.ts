/**
 * The pass manager: runs named passes in order, optionally verifying the module after each one,
 * timing each one, and printing the module before the first and after any (or every) pass
 * (`--print-after=cse`, `--print-after-all`), as MLIR's pass manager does.
 */
import { LingcError } from "../../ir/errors";
import type { Module } from "../../ir/module";
import { printModule } from "../../ir/print";
import { verifyModule } from "../../ir/verify";
import { cse } from "./cse";
import { dce } from "./dce";
import { fusion } from "./fusion";
import { DEFAULT_PASS_CONTEXT, type Pass, type PassContext } from "./pass";

export const PASSES: readonly Pass[] = [dce, cse, fusion];

export function getPass(name: string): Pass {
  const p = PASSES.find((x) => x.name === name);
  if (!p) throw new LingcError(`unknown pass '${name}' (available: ${PASSES.map((x) => x.name).join(", ")})`);
  return p;
}

/** Splits a `--passes a,b,c` list; an empty string means no passes. */
export function parsePassList(list: string): Pass[] {
  return list
    .split(",")
    .map((s) => s.trim())
    .filter((s) => s.length > 0)
    .map(getPass);
}

export interface PassRunOptions {
  verifyEach?: boolean;
  context?: PassContext;
  /** Pass names after which to print the module, or "all". */
  printAfter?: ReadonlySet<string> | "all";
  /** Where printed modules go (default: stdout). */
  print?: (text: string) => void;
}

export interface PassTiming {
  name: string;
  ms: number;
}

export function runPasses(m: Module, passes: readonly Pass[], opts: PassRunOptions = {}): PassTiming[] {
  const print = opts.print ?? ((t: string) => process.stdout.write(t));
  if (opts.printAfter && opts.printAfter !== "all") {
    for (const name of opts.printAfter) {
      getPass(name);
      if (!passes.some((p) => p.name === name)) throw new LingcError(`--print-after=${name}: pass '${name}' is not in this pipeline (${passes.map((p) => p.name).join(", ") || "no passes"})`);
    }
  }
  const timings: PassTiming[] = [];
  for (const p of passes) {
    const t0 = performance.now();
    p.run(m, opts.context ?? DEFAULT_PASS_CONTEXT);
    timings.push({ name: p.name, ms: performance.now() - t0 });
    if (opts.verifyEach) {
      try {
        verifyModule(m);
      } catch (e) {
        if (e instanceof LingcError) throw new LingcError(`the module is invalid after pass '${p.name}': ${e.message}`);
        throw e;
      }
    }
    if (opts.printAfter === "all" || opts.printAfter?.has(p.name)) print(`// ----- IR after ${p.name} -----\n${printModule(m)}`);
  }
  return timings;
}
