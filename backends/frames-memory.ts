/**
 * Memory of a folded program run with storage allocated when first written and freed after its last
 * use (the CUDA host without graph capture): which storage each function's steps acquire and
 * release, and the peak of live bytes this gives for given sizes: the prediction the H200 run's
 * measured peak is checked against (bench/cuda/device.sh trainmem).
 *
 * A function owns the storage it computes (unless computed once at load) and the results of the
 * calls it makes; it frees either after its last use in it, except what it returns (its caller's
 * then). Parameters, weights, constants and graph inputs are never freed here.
 */
import type { Dim } from "../ir/dim";
import { byteSize } from "../ir/dtype";
import type { FrameSchedule } from "./frames";
import { storageSlot } from "./schedule";

export interface Lifetimes {
  /** Per step: storage slots to allocate before it, and to free after it. */
  acquire: number[][];
  release: number[][];
}

/** Storage computed at load, per function (those are never freed). */
export type Residents = ReadonlyMap<string, ReadonlySet<number>>;

/** Whether result `i` of `fr` is storage it made at run time (not a parameter, weight or load-time value passed through). */
function returnsRunStorage(frames: ReadonlyMap<string, FrameSchedule>, residents: Residents, fr: FrameSchedule, i: number): boolean {
  const st = storageSlot(fr, fr.results[i]!);
  const slot = fr.slots[st]!;
  if (slot.source === "computed") return !(residents.get(fr.func.name)?.has(st) ?? false);
  if (slot.source === "call") {
    const cs = fr.calls[slot.call!.site]!;
    return returnsRunStorage(frames, residents, frames.get(cs.callee.name)!, slot.call!.result);
  }
  return false;
}

/**
 * What each step of `fr` allocates and frees. `frames` and `residents` (by function name) describe
 * the functions it calls, whose results it frees when they are storage made at run time.
 * `alsoReads` (step index -> value ids): what a step may read beyond its own reads (a GEMV that runs
 * an earlier quantize step as its prologue reads that step's input), kept live through it.
 */
export function storageLifetimes(fr: FrameSchedule, frames: ReadonlyMap<string, FrameSchedule>, residents: Residents, alsoReads: ReadonlyMap<number, readonly number[]> = new Map()): Lifetimes {
  const resident = residents.get(fr.func.name) ?? new Set<number>();
  const owned = (st: number) => {
    const slot = fr.slots[st]!;
    if (slot.source === "computed") return !resident.has(st);
    if (slot.source === "call") return returnsRunStorage(frames, residents, frames.get(fr.calls[slot.call!.site]!.callee.name)!, slot.call!.result);
    return false;
  };
  // Results of one call that the callee returns from one storage (a value returned twice: a layer's
  // present.value is also a value it saves for its backward) are one storage here too.
  const sameStorage = new Map<string, number>();
  const canonical = (st: number) => {
    const slot = fr.slots[st]!;
    if (slot.source !== "call") return st;
    const callee = frames.get(fr.calls[slot.call!.site]!.callee.name)!;
    const key = `${slot.call!.site}:${storageSlot(callee, callee.results[slot.call!.result]!)}`;
    if (!sameStorage.has(key)) sameStorage.set(key, st);
    return sameStorage.get(key)!;
  };
  const roots = (id: number) => {
    const st = storageSlot(fr, id);
    const scales = fr.slots[st]!.scales;
    return (scales === undefined ? [st] : [st, storageSlot(fr, scales)]).map(canonical);
  };
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  fr.steps.forEach((s, n) => {
    const ids = s.call !== undefined ? [...fr.calls[s.call]!.args, ...fr.calls[s.call]!.results] : [...s.step!.reads.values(), ...s.step!.writes.values(), ...(alsoReads.get(n) ?? [])];
    for (const id of ids) {
      for (const r of roots(id)) {
        if (!owned(r)) continue;
        if (!first.has(r)) first.set(r, n);
        last.set(r, n);
      }
    }
  });
  const returned = new Set(fr.results.flatMap(roots));
  const acquire: number[][] = fr.steps.map(() => []);
  const release: number[][] = fr.steps.map(() => []);
  for (const [r, n] of first) if (fr.slots[r]!.source === "computed") acquire[n]!.push(r);
  for (const [r, n] of last) if (!returned.has(r)) release[n]!.push(r);
  return { acquire, release };
}

/** Bytes of a slot at the given values of its function's symbols. */
function slotBytes(fr: FrameSchedule, slot: number, sym: ReadonlyMap<string, number>): number {
  const t = fr.slots[slot]!.type;
  return t.shape.reduce((n, d) => n * d.eval(sym), 1) * byteSize(t.dtype);
}

/**
 * The peak of live bytes (storage acquired and not yet released) over a run of the entry frame
 * (the last of `frames`, as buildFrames orders them) at the entry's sizes `sizes`, and the bytes
 * still live at the end (the graph's results).
 */
export function predictPeak(frames: readonly FrameSchedule[], lifetimes: ReadonlyMap<FrameSchedule, Lifetimes>, sizes: ReadonlyMap<string, number>): { peak: number; end: number } {
  const byName = new Map(frames.map((f) => [f.func.name, f]));
  let live = 0;
  let peak = 0;
  const run = (fr: FrameSchedule, sym: ReadonlyMap<string, number>) => {
    const life = lifetimes.get(fr)!;
    fr.steps.forEach((s, n) => {
      for (const st of life.acquire[n]!) live += slotBytes(fr, st, sym);
      peak = Math.max(peak, live);
      if (s.call !== undefined) {
        const cs = fr.calls[s.call]!;
        const inner = new Map<string, number>();
        for (const [k, d] of cs.symbols as ReadonlyMap<string, Dim>) inner.set(k, d.eval(sym));
        run(byName.get(cs.callee.name)!, inner);
      }
      for (const st of life.release[n]!) live -= slotBytes(fr, st, sym);
    });
  };
  run(frames[frames.length - 1]!, sizes);
  return { peak, end: live };
}
