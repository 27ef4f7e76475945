/**
 * Which consecutive steps of a function the CUDA emitter runs as the phases of one launch
 * (GenLimits.phaseLaunches, LINGC_PHASE_LAUNCH; kir-merge's mergePhases): a grid barrier between a
 * step and the next where there was a kernel boundary, every phase spread over the whole grid. Unlike
 * a tail (launch-tails.ts), whose work runs on the last workgroup alone, a phase of many workgroups
 * (a GEMV) runs at full width, so a group may hold any run of steps whose sizes choose generated
 * kernels that are plain launches (nothing bound beyond their buffers: no scratch, second kernel,
 * counters, dynamic shared memory or a cache's sizes): at decode batch 1 the input norm and the QKV
 * GEMV; the output projection, residual norm, router gate, router and MoE dispatch; the experts'
 * SwiGLU and down launch pairs and the combine. A launch pair is one phase (both its kernels). The
 * launch is no larger than what fits on the device at once (the runtime's occupancy query, at most
 * `perSm` workgroups a multiprocessor), which a grid barrier needs. A phase of one workgroup's work
 * of a tail's kind (the residual norm, the router, the dispatch: serialPhase) after the first runs in
 * the last workgroup to arrive at the barrier before it, which then releases the rest: one barrier
 * where there were two (a bf16 MoE layer's 7 become 4). A group runs where the sizes choose every
 * member's kernel, those serial phases are one workgroup's work, and at least one member's choice
 * has a size condition (so that it runs at decode sizes only); each step runs as before otherwise.
 */
import type { CudaProfile } from "../../ir/target";
import type { FrameSchedule } from "../frames";
import type { GeneratedKernel, GenLimits } from "../kernels/gen";
import { GRID_SYNC_SLOT } from "../kernels/gen/context";
import { mergePhases, phaseCount, phaseName, phaseProblem } from "../kernels/kir-merge";
import { storageSlot, type Step } from "../schedule";
import type { Dim } from "../../ir/dim";
import { dynamicSharedBytes } from "./render";
import { mergedChoice, pairFlag, workgroupCount, workgroups, type LaunchPair } from "./launch-pairs";
import { TAIL_TEMPLATES } from "./launch-tails";

/** The generated templates a library step's first choice may name for it to be a phase: the dense, expert and FP8 GEMVs. */
const PHASE_TEMPLATES: ReadonlySet<string> = new Set(["router_warp", "linear_gemv", "grouped_gemv", "grouped_gemv_rows", "grouped_gemv_fp8", "gemv_fp8", "quantize"]);
/** The most (token, slot) pairs the generated MoE dispatch sorts as a phase (each of its threads reads them all). */
const DISPATCH_PHASE_PAIRS = 256;

/** One phase: its steps (a pair's two, or one), its kernel and when the sizes choose it (C++, "" for always); `few`: where it may run serially (serialPhase: its work one workgroup's, C++). */
interface Phase {
  steps: number[];
  kernel: GeneratedKernel;
  when: string;
  pair?: LaunchPair;
  few?: string;
}

/** A lone step as a phase: its generated kernel where the sizes may choose one that is a plain launch; undefined otherwise. */
function lonePhase(step: Step, fr: FrameSchedule, limits: GenLimits, profile: CudaProfile, n: number, dimText: (d: Dim) => string): Phase | undefined {
  const c = mergedChoice(step, fr, limits, profile, n, dimText, PHASE_TEMPLATES, DISPATCH_PHASE_PAIRS);
  if (!c || (c.dispatched && !PHASE_TEMPLATES.has(c.kernel.template ?? ""))) return undefined;
  const { kernel, when } = c;
  const g = workgroups(kernel);
  if (!g || dynamicSharedBytes(kernel.kernel)) return undefined;
  const few = serialPhase(kernel) ? `${workgroupCount(g, dimText)} <= ${SERIAL_WORKGROUPS}` : undefined;
  return { steps: [n], kernel, when, ...(few ? { few } : {}) };
}

/**
 * The most workgroups' work a serial phase is. One: the barrier's last arrival runs it alone, so more
 * would be on the critical path in turn (the combine's 4 ran slower so: bench/results/phases-2026-12-03-h200.md).
 */
export const SERIAL_WORKGROUPS = 1;

/**
 * Whether a phase of this kernel may run serially after another (in the barrier's last arrival): a
 * tail's kind of work (a norm of rows, the router, the dispatch) that is one workgroup's at the
 * smallest sizes (every symbol 1; a run-time condition of the group's holds it to that).
 */
export function serialPhase(k: GeneratedKernel): boolean {
  const g = workgroups(k);
  if (!g || !TAIL_TEMPLATES.has(k.template ?? "")) return false;
  const ones = new Map(g.dim.symbols().map((s) => [s, 1] as const));
  return Math.ceil(g.dim.eval(ones) / g.per) <= SERIAL_WORKGROUPS;
}

/**
 * The function's launches with phases, by their first step's index: the launch pairs given (`pairs`)
 * that join no group, and each group of two or more phases as a launch pair whose merged kernel is the
 * phase-merged one (its `tails`: the steps after its first two). `loadTime`: the steps that run once
 * at load; `dimText`: a host-function dim as C++.
 */
export function launchPhases(
  fr: FrameSchedule,
  limits: GenLimits,
  profile: CudaProfile,
  pairs: ReadonlyMap<number, LaunchPair>,
  loadTime: (step: Step) => boolean,
  dimText: (d: Dim) => string,
): Map<number, LaunchPair> {
  const perSm = limits.phaseLaunches;
  const out = new Map(pairs);
  if (!perSm) return out;
  const seconds = new Map([...pairs].map(([n, p]) => [p.second, n] as const));
  const runs = (k: number) => fr.steps[k]?.step !== undefined && !loadTime(fr.steps[k]!.step!);
  const storageOf = (id: number) => storageSlot(fr, id);
  // The phases in step order: a pair at its first step, a lone step where it can be one, or a break.
  const order: (Phase | undefined)[] = [];
  for (let n = 0; n < fr.steps.length; n++) {
    // A call runs its callee's launches between: the group ends there (its buffers are not yet written).
    if (fr.steps[n]?.call !== undefined) {
      order.push(undefined);
      continue;
    }
    if (!runs(n) || seconds.has(n)) continue;
    const pair = pairs.get(n);
    if (pair) order.push(pair.merged.grid.parts || pair.tails ? undefined : { steps: [n, pair.second], kernel: pair.merged, when: pair.when, pair });
    else order.push(lonePhase(fr.steps[n]!.step!, fr, limits, profile, n, dimText));
  }
  // An absorbed pair's first step -> the group's first step (a later pair that names its flag takes the group's).
  const into = new Map<number, number>();
  let group: Phase[] = [];
  let merged: GeneratedKernel | undefined;
  const close = () => {
    if (merged && group.length > 1) {
      const absorbed = new Set(group.flatMap((p) => (p.pair ? [p.steps[0]!] : [])));
      // A pair's condition may name an absorbed pair's flag (pairs after pairs): that pair's own condition is in the group's.
      const own = (w: string) => w.split(" && ").filter((c) => !absorbed.has(Number(/^pair(\d+)_$/.exec(c)?.[1] ?? NaN)) && c !== "true" && c !== "");
      // (A serial phase's few workgroups are a condition of the group's: run by one, they must be few.)
      const when = [...new Set(group.flatMap((p, j) => [...own(p.when), ...(j > 0 && p.few ? [p.few] : [])]))].join(" && ");
      // (A group that would run at every size, prefill's too, is left as it was.)
      if (!when) {
        group = [];
        merged = undefined;
        return;
      }
      const first = group[0]!.steps[0]!;
      const members = group.flatMap((p) => p.steps.map((k) => ({ step: k, kernel: p.pair ? (k === p.steps[0] ? p.pair.a : p.pair.b) : p.kernel })));
      for (const p of group) if (p.pair) {
        out.delete(p.steps[0]!);
        into.set(p.steps[0]!, first);
      }
      const [a, b, ...rest] = members;
      out.set(first, { a: a!.kernel, b: b!.kernel, merged, second: b!.step, when, ...(rest.length ? { tails: rest } : {}) });
    }
    group = [];
    merged = undefined;
  };
  for (const phase of order) {
    if (!phase) {
      close();
      continue;
    }
    const members = [...group, phase];
    const longer = group.length ? phaseGroup(members.map((p) => p.kernel), perSm, storageOf, members.map((p, j) => j > 0 && p.few !== undefined)) : undefined;
    if (longer) {
      group.push(phase);
      merged = longer;
      continue;
    }
    close();
    group = [phase];
  }
  close();
  for (const [n, p] of out) {
    const when = p.when.replace(/pair(\d+)_/g, (m, k: string) => (into.has(Number(k)) ? pairFlag(into.get(Number(k))!) : m));
    if (when !== p.when) out.set(n, { ...p, when });
  }
  return out;
}

/**
 * Kernels (in step order) as the phases of one launch (mergePhases), where each is a plain launch and
 * no phase writes the storage of a buffer an earlier phase only reads (two pointers to one memory,
 * one of them const __restrict__); undefined otherwise. A phase's buffer of storage that an earlier
 * phase writes is read (or written) through that phase's parameter. `storageOf`: a slot's storage;
 * `serial`: the phases run by the last workgroup to arrive at the barrier before them (mergePhases).
 */
export function phaseGroup(kernels: readonly GeneratedKernel[], perSm: number, storageOf: (id: number) => number, serial: readonly boolean[] = []): GeneratedKernel | undefined {
  const grids = kernels.map(workgroups);
  if (grids.some((g) => !g) || phaseProblem(kernels.map((k) => k.kernel))) return undefined;
  const written = new Map<number, string>();
  const read = new Set<number>();
  const slots: number[] = [];
  const uniforms: GeneratedKernel["uniforms"] = [];
  const phases: { kernel: GeneratedKernel["kernel"]; same: Map<string, string>; serial?: boolean }[] = [];
  for (const [j, g] of kernels.entries()) {
    const name = (x: string) => (j === 0 ? x : phaseName(x, j));
    const same = new Map<string, string>();
    for (const [k, x] of g.kernel.buffers.entries()) {
      const st = storageOf(g.slots[k]!);
      const earlier = written.get(st);
      if (earlier) {
        // (Written twice: the first result would be gone when selftest checks its step, after the launch.)
        if (x.write) return undefined;
        same.set(x.name, earlier);
        continue;
      }
      if (x.write && read.has(st)) return undefined;
      slots.push(g.slots[k]!);
      if (x.write) written.set(st, name(x.name));
      else read.add(st);
    }
    uniforms.push(...g.uniforms.map((u) => ({ ...u, name: name(u.name) })), { name: phaseCount(j), dim: grids[j]!.dim, ...(grids[j]!.per > 1 ? { per: grids[j]!.per } : {}) });
    phases.push({ kernel: g.kernel, same, ...(serial[j] ? { serial: true } : {}) });
  }
  const kernel = mergePhases(phases, `${kernels[0]!.kernel.name}_phases`);
  if (dynamicSharedBytes(kernel)) return undefined;
  return { kernel, slots: [...slots, GRID_SYNC_SLOT], uniforms, grid: { dim: grids[0]!.dim, per: grids[0]!.per, resident: { perSm, units: grids.map((g) => g!) } } };
}
