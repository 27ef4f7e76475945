/**
 * Which steps of a function the CUDA emitter launches as one kernel (GenLimits.pairLaunches,
 * LINGC_PAIR_LAUNCH): two near each other, both run by the library's dispatch with a generated
 * kernel template as its first choice, neither reading or writing what the other writes, their
 * kernels of one workgroup size and one workgroup per grid unit, without scratch, a second kernel,
 * counters, dynamic shared memory or a cache's sizes. The merged kernel is kir-merge's; the emitter runs it under a host
 * branch where the sizes choose both first choices, and each step as before otherwise.
 */
import type { CudaProfile } from "../../ir/target";
import type { FrameSchedule } from "../frames";
import { generateStep, type GeneratedKernel, type GenLimits } from "../kernels/gen";
import { COUNTERS_SLOT } from "../kernels/gen/context";
import { mergeKernels, MERGE_SPLIT, secondName } from "../kernels/kir-merge";
import { capacitySlotOf, storageSlot, type Step } from "../schedule";
import { choiceCondition, stepDispatch } from "./library";
import type { Dim } from "../../ir/dim";
import { isFp8 } from "../../ir/dtype";
import { dynamicSharedBytes } from "./render";

/** Two steps as one launch: their kernels, the merged one, the second's index, and when the sizes choose both (C++). */
export interface LaunchPair {
  a: GeneratedKernel;
  b: GeneratedKernel;
  merged: GeneratedKernel;
  /** The second step's index. */
  second: number;
  when: string;
  /** Steps after the second that the merged launch's last workgroup runs too (launch-tails.ts), with their kernels. */
  tails?: { step: number; kernel: GeneratedKernel }[];
}

/**
 * The generated kernel templates a pair may hold, as a library dispatch's first choice names them
 * (the bf16 GEMVs; by FP8's rules, the FP8 expert GEMV too), or as the template an FP8 linear's
 * "generated" choice takes (gemv_fp8, the warp GEMV of few rows).
 */
const PAIRABLE_TEMPLATES: Record<"bf16" | "fp8", ReadonlySet<string>> = {
  bf16: new Set(["linear_gemv", "grouped_gemv", "grouped_gemv_rows"]),
  // (FP8: also an activation quantize, a generated step of its own: the routed experts' hidden rows'
  // with the shared expert's, so that their down projections can pair after them.)
  fp8: new Set(["linear_gemv", "grouped_gemv", "grouped_gemv_rows", "grouped_gemv_fp8", "gemv_fp8", "quantize"]),
};
/** Dispatch choices named "generated" (the FP8 linear's) take the template that covers the step. */
const GENERATED = "generated";

/**
 * How many steps later than the first a pair's second step may be (the steps between stay where they
 * are): bf16 by index; by FP8's rules (a function with fp8 steps, or LINGC_PAIR_LAUNCH=fp8) 3,
 * counting only steps that run at run time (a weight quantized at load is not between): FP8
 * Ling-mini's routed SwiGLU, hidden rows' quantize and down projection, then the shared expert's
 * three, pair up one to one.
 */
const REACH = { bf16: 2, fp8: 3 } as const;

/**
 * Workgroups a multiprocessor an FP8 pair's merged kernel asks ptxas to fit (kir minBlocks), unless
 * GenLimits.fp8PairBlocks says: 3 since the GEMVs take several columns a warp (the SwiGLU pair 102 ->
 * 78 registers, no spill; 4: 64 and a spill), FP8 Ling-mini decode b1 1.121-1.123 -> 1.108-1.114 ms a
 * step on the H200 (bench/results/fp8-columns-2026-12-04-h200.md call 3; 4: 1.117-1.126).
 */
const FP8_PAIR_MIN_BLOCKS = 3;

/**
 * The function's launch pairs, by the first step's index (a step is in one pair at most). The second
 * step may be up to REACH steps after the first when it is independent of the steps between that
 * still run there (a step that runs once at load is not there at run time); a step between that an
 * earlier pair moved up is then a condition of this pair (its flag joins `when`), since only that
 * pair runs it before this one.
 * `loadTime`: the steps that run once at load (never paired); `dimText`: a host-function dim as C++.
 */
export function launchPairs(fr: FrameSchedule, limits: GenLimits, profile: CudaProfile, loadTime: (step: Step) => boolean, dimText: (d: Dim) => string): Map<number, LaunchPair> {
  const pairs = new Map<number, LaunchPair>();
  // A function with FP8 steps pairs by FP8's rules (measured on the H200: FP8 Ling-mini decode batch
  // 1 1.369 -> 1.261-1.271 ms a step, batch 32 even; bench/results/fp8-norm-2026-12-02-h200.md call 8);
  // LINGC_PAIR_LAUNCH=fp8 applies them in every function.
  const mode = limits.pairLaunches === "fp8" || hasFp8Steps(fr) ? "fp8" : "bf16";
  const pairable = PAIRABLE_TEMPLATES[mode];
  /** Whether step m is past the first's reach (n: the first's index). */
  const past = (n: number, m: number) => {
    if (mode === "bf16") return m > n + REACH.bf16;
    let count = 0;
    for (let k = n + 1; k <= m; k++) {
      const st = fr.steps[k]?.step;
      if (!st || !loadTime(st)) count++;
    }
    return count > REACH.fp8;
  };
  /** A moved step's index -> its pair's first step's index. */
  const moved = new Map<number, number>();
  const storage = (ids: Iterable<number>) => new Set([...ids].map((id) => storageSlot(fr, id)));
  const meets = (x: Set<number>, y: Set<number>) => [...x].some((st) => y.has(st));
  const usable = (k: number) => {
    const st = fr.steps[k]?.step;
    return st && !loadTime(st) && !pairs.has(k) && !moved.has(k) ? st : undefined;
  };
  for (let n = 0; n + 1 < fr.steps.length; n++) {
    const sa = usable(n);
    const ca = sa && firstGenerated(sa, profile, pairable, dimText);
    if (!sa || !ca) continue;
    const [ra, wa] = [storage(sa.reads.values()), storage(sa.writes.values())];
    for (let m = n + 1; !past(n, m) && m < fr.steps.length; m++) {
      const sb = usable(m);
      const cb = sb && firstGenerated(sb, profile, pairable, dimText);
      if (!sb || !cb) continue;
      const [rb, wb] = [storage(sb.reads.values()), storage(sb.writes.values())];
      if (meets(wa, rb) || meets(wa, wb) || meets(wb, ra)) continue;
      // The steps between: each either moved up by an earlier pair (whose flag this pair then needs) or independent of the second step.
      const needs: number[] = [];
      const between = Array.from({ length: m - n - 1 }, (_, j) => n + 1 + j);
      const clear = between.every((k) => {
        if (moved.has(k)) {
          needs.push(moved.get(k)!);
          return true;
        }
        const sk = fr.steps[k]!.step;
        if (!sk) return false;
        // (A step that runs once at load, such as a weight quantized there, is not between them at run time.)
        if (loadTime(sk)) return true;
        const [rk, wk] = [storage(sk.reads.values()), storage(sk.writes.values())];
        return !meets(wk, rb) && !meets(wb, rk) && !meets(wb, wk);
      });
      if (!clear) continue;
      const a = generateStep(sa, fr, limits, `k${n}`, ca.template);
      const b = generateStep(sb, fr, limits, `k${m}`, cb.template);
      const [ga, gb] = [workgroups(a), workgroups(b)];
      if (!ga || !gb || !pairable.has(a.template!) || !pairable.has(b.template!) || a.kernel.wg !== b.kernel.wg || a.kernel.minBlocks !== b.kernel.minBlocks) continue;
      const kernel = mergeKernels(a.kernel, b.kernel, `${a.kernel.name}_pair`);
      if (dynamicSharedBytes(kernel)) continue;
      // FP8: the merged kernel takes the registers of the heavier of the two (the shared expert's
      // SwiGLU GEMV, its weight loads hoisted out of the row loop), which would hold the other's
      // workgroups (the routed SwiGLU GEMV) to fewer a multiprocessor; FP8_PAIR_MIN_BLOCKS keeps
      // most of their occupancy.
      if (mode === "fp8" && kernel.minBlocks === undefined) kernel.minBlocks = limits.fp8PairBlocks ?? FP8_PAIR_MIN_BLOCKS;
      const exact = ga.per === 1 && gb.per === 1;
      const merged: GeneratedKernel = {
        kernel,
        slots: [...a.slots, ...b.slots],
        uniforms: [...a.uniforms, ...b.uniforms.map((u) => ({ ...u, name: secondName(u.name) })), { name: MERGE_SPLIT, dim: ga.dim, ...(ga.per > 1 ? { per: ga.per } : {}) }],
        grid: exact ? { dim: ga.dim.add(gb.dim), per: 1 } : { dim: ga.dim.add(gb.dim), per: 1, parts: [ga, gb] },
      };
      const when = [...new Set([...needs.map(pairFlag), ca.when, cb.when].filter((w) => w))].join(" && ") || "true";
      pairs.set(n, { a, b, merged, second: m, when });
      moved.set(m, n);
      break;
    }
  }
  return pairs;
}

/** Whether any step of the function reads or writes an fp8 tensor. */
function hasFp8Steps(fr: FrameSchedule): boolean {
  return fr.steps.some((s) => s.step?.ops.some((o) => [...o.operands, ...o.results].some((v) => isFp8(v.type.dtype))));
}

/** The kernel a launch pair runs for its step k (its second step's or a tail's: what selftest checks k against). */
export function memberKernel(p: LaunchPair, k: number): GeneratedKernel {
  const kernel = k === p.second ? p.b : p.tails?.find((t) => t.step === k)?.kernel;
  if (!kernel) throw new Error(`launch pair: step ${k} is not one of its steps after the first`);
  return kernel;
}

/** The C++ flag that says pair `n` ran (its first step's index). */
export const pairFlag = (n: number): string => `pair${n}_`;

/**
 * The workgroups of a kernel the pair can hold (one launch, nothing bound beyond its buffers): ceil(dim
 * / per), its grid's units over the units a workgroup takes, as a dim (per 1) where that divides
 * exactly; else undefined.
 */
export function workgroups(g: GeneratedKernel): { dim: Dim; per: number } | undefined {
  const bound = g.then || g.scratch || g.slots.includes(COUNTERS_SLOT) || g.uniforms.some((u) => u.dim.symbols().some((x) => capacitySlotOf(x) !== undefined));
  if (bound) return undefined;
  const whole = g.grid.per === 1 ? g.grid.dim : g.grid.dim.divExact(g.grid.per);
  return whole ? { dim: whole, per: 1 } : g.grid;
}

/**
 * A step's generated kernel as a merged launch (a tail's, a phase's) runs it, with the sizes (C++, ""
 * for always) where the step's dispatch chooses it: its first choice where that is one of `templates`
 * (or a "generated" one: the caller checks the template generated); for the MoE dispatch, whose
 * library choices are the runtime's kernels, the generated one at most `dispatchPairs` (token, slot)
 * pairs; a step without a dispatch as generated. `dispatched`: whether the step's own dispatch chose
 * it (not the MoE dispatch's rule). Undefined where the first choice is another kernel.
 */
export function mergedChoice(
  step: Step,
  fr: FrameSchedule,
  limits: GenLimits,
  profile: CudaProfile,
  n: number,
  dimText: (d: Dim) => string,
  templates: ReadonlySet<string>,
  dispatchPairs: number,
): { kernel: GeneratedKernel; when: string; dispatched: boolean } | undefined {
  const d = stepDispatch(step, profile);
  let template: string | undefined;
  let when = "";
  if (d?.kind === "moe_dispatch") {
    template = "dispatch";
    when = `(${dimText(step.ops[0]!.operands[0]!.type.numel())}) <= ${dispatchPairs}`;
  } else if (d) {
    const c = firstGenerated(step, profile, templates, dimText);
    if (!c) return undefined;
    template = c.template;
    when = c.when;
  }
  return { kernel: generateStep(step, fr, limits, `k${n}`, template), when, dispatched: d !== undefined && d.kind !== "moe_dispatch" };
}

/** A launch's workgroup count (workgroups()'s) as C++. */
export const workgroupCount = (g: { dim: Dim; per: number }, dimText: (d: Dim) => string): string => (g.per > 1 ? `((${dimText(g.dim)}) + ${g.per - 1}) / ${g.per}` : `(${dimText(g.dim)})`);

/**
 * A library step's first dispatch choice when it is a generated kernel: the template (undefined for
 * a "generated" choice: generateStep picks the one that covers the step) and its condition as C++.
 */
export function firstGenerated(step: Step, profile: CudaProfile, pairable: ReadonlySet<string>, dimText: (d: Dim) => string): { template: string | undefined; when: string } | undefined {
  const d = stepDispatch(step, profile);
  // A generated step of its own (no library dispatch): an activation quantize, where pairable.
  if (!d) return pairable.has("quantize") && step.ops.some((o) => o.opName === "quantize") ? { template: undefined, when: "" } : undefined;
  const c = d.dispatch[0];
  // (A "generated" choice's template is known once generated: the pair checks it then.)
  if (!c || (c.kernel !== GENERATED && !pairable.has(c.kernel))) return undefined;
  return { template: c.kernel === GENERATED ? undefined : c.kernel, when: choiceCondition(c, dimText) };
}
