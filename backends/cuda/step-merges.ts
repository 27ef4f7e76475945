/**
 * Which steps of a function the CUDA emitter runs merged with another, and under which sizes: launch
 * pairs (launch-pairs.ts) and tails (launch-tails.ts: run as pairs are), quantize prologues (quant-prologue.ts; qk_norm_rope's and
 * an RMSNorm's in the same shape: attention-prologue.ts, norm-prologue.ts) and quantize epilogues
 * (quant-epilogue.ts), each where its GenLimits switch is on, and how they may overlap:
 * - a step in a launch pair takes no prologue (the pair's sizes and the prologue's would both pick
 *   the GEMV);
 * - a quantize epilogue's producing step (a grouped matmul, an attention) may be in a launch pair,
 *   and so may its quantize step: the epilogue then runs only where neither pair does (a pair runs
 *   the producer unmerged, or reads its result), so a pair's condition must be known at the
 *   producer (it names flags of pairs up to it only).
 * The emitter turns them into host branches; merged steps take their storage at the first step.
 */
import type { CudaProfile } from "../../ir/target";
import type { FrameSchedule } from "../frames";
import type { GenLimits } from "../kernels/gen";
import type { Step } from "../schedule";
import type { Dim } from "../../ir/dim";
import { launchPairs, pairFlag, type LaunchPair } from "./launch-pairs";
import { launchTails } from "./launch-tails";
import { launchPhases } from "./launch-phases";
import { quantPrologues, type QuantPrologue } from "./quant-prologue";
import { attentionPrologues } from "./attention-prologue";
import { normPrologues } from "./norm-prologue";
import { quantEpilogues, type QuantEpilogue } from "./quant-epilogue";

export interface StepMerges {
  /** Launch pairs (and launches with tails) by their first step's index. */
  pairs: ReadonlyMap<number, LaunchPair>;
  /** A pair's second step's index (or a tail's) -> its first step's. */
  firstOf: ReadonlyMap<number, number>;
  /** Quantize prologues by their GEMV step's index. */
  prologues: ReadonlyMap<number, QuantPrologue>;
  /** A quantize prologue's quantize step's index -> the prologue. */
  prologueOf: ReadonlyMap<number, QuantPrologue>;
  /** Quantize epilogues by their producing step's index. */
  epilogues: ReadonlyMap<number, QuantEpilogue>;
  /** A quantize epilogue's quantize step's index -> the epilogue. */
  epilogueOf: ReadonlyMap<number, QuantEpilogue>;
  /** When a launch pair runs step k (C++), if k is in one. */
  pairWhen(k: number): string | undefined;
  /** The steps whose storage is taken at step n: its own (unless an earlier merge took it), and those of the steps its merged launches write. */
  acquiredAt(n: number): number[];
}

/** The function's merges; `loadTime`: the steps that run once at load (never merged); `dimText`: a host dim as C++. */
export function stepMerges(fr: FrameSchedule, limits: GenLimits, profile: CudaProfile, loadTime: (step: Step) => boolean, dimText: (d: Dim) => string): StepMerges {
  const runs = (k: number) => fr.steps[k]?.step !== undefined && !loadTime(fr.steps[k]!.step!);
  const paired = limits.pairLaunches ? launchPairs(fr, limits, profile, loadTime, dimText) : new Map<number, LaunchPair>();
  // Tails (dependent steps run by the last workgroup of the launch before) are launched as pairs are.
  // Or phases (consecutive steps as one launch, a grid barrier between each), launched as pairs are too.
  const pairs = limits.tailLaunches ? launchTails(fr, limits, profile, paired, loadTime, dimText) : limits.phaseLaunches ? launchPhases(fr, limits, profile, paired, loadTime, dimText) : paired;
  const firstOf = new Map([...pairs].flatMap(([n, p]) => [p.second, ...(p.tails ?? []).map((t) => t.step)].map((k) => [k, n] as const)));
  const free = (k: number) => runs(k) && !pairs.has(k) && !firstOf.has(k);
  const prologues = limits.quantPrologue ? quantPrologues(fr, limits, profile, free, dimText) : new Map<number, QuantPrologue>();
  // qk_norm_rope run by decode attention (attention-prologue.ts), and an RMSNorm by the dense GEMV
  // that alone reads it (norm-prologue.ts), in the same shape.
  const more = [...(limits.attentionPrologue ? [attentionPrologues] : []), ...(limits.normPrologue ? [normPrologues] : [])];
  for (const found of more) {
    const taken = new Set([...prologues.values()].flatMap((p) => [p.quant, p.consumer]));
    for (const [k, p] of found(fr, limits, profile, (j) => free(j) && !taken.has(j), dimText)) prologues.set(k, p);
  }
  const prologueOf = new Map([...prologues.values()].map((p) => [p.quant, p]));
  const pairWhen = (k: number) => pairs.get(k)?.when ?? (firstOf.has(k) ? pairFlag(firstOf.get(k)!) : undefined);
  const knownAt = (cond: string, a: number) => [...cond.matchAll(/pair(\d+)_/g)].every((m) => Number(m[1]) <= a);
  const unprologued = (k: number) => runs(k) && !prologues.has(k) && !prologueOf.has(k);
  const mergeable = (a: number, b: number) => unprologued(a) && unprologued(b) && knownAt(pairWhen(b) ?? "", a);
  const epilogues = limits.quantEpilogue || limits.attentionQuantEpilogue ? quantEpilogues(fr, limits, profile, mergeable, dimText) : new Map<number, QuantEpilogue>();
  const epilogueOf = new Map([...epilogues.values()].map((e) => [e.quant, e]));
  const acquiredAt = (n: number) => {
    const p = pairs.get(n);
    const seconds = p ? [p.second, ...(p.tails ?? []).map((t) => t.step)] : [];
    const quant = epilogues.get(n)?.quant;
    const own = firstOf.has(n) || epilogueOf.has(n) ? [] : [n];
    return [...seconds, ...(quant !== undefined && !seconds.includes(quant) ? [quant] : []), ...own];
  };
  return { pairs, firstOf, prologues, prologueOf, epilogues, epilogueOf, pairWhen, acquiredAt };
}
