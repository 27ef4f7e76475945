/**
 * kir on the CPU: runs a kernel as a GPU with warps of 32 lanes would, so that tile programs (mma
 * fragments, ldmatrix, shuffles, async copies, barriers) are checked for their numbers where there
 * is no GPU (CI). A reference executor, not a backend: slow, exact in its f32/i32 arithmetic, with
 * fp32 sums in the MMAs (their order inside one MMA is the hardware's own).
 *
 * Each warp runs its lanes in lockstep with an active mask (an `if` runs both sides under their
 * masks, a loop runs while a lane is active); a workgroup's warps run interleaved, a statement at a
 * time, and meet at each barrier.
 * Async copies complete at once (copy16 is a copy; commit and wait do nothing), which is what a
 * correct program may assume after its wait. So do warpgroup MMAs (wgmma: each warp computes its
 * 16 rows of the product from the 128-byte-swizzled shared tiles at issue; fences, commits, waits and
 * proxy fences do nothing) and register moves (setmaxnreg). mbarriers keep their count of arrivals
 * and their phase in their two words; a warp waiting on one retries, and a workgroup whose warps
 * all wait (on mbarriers, or at a barrier that a waiting warp never reaches) is refused as a
 * deadlock.
 */
import type { Kernel, KType, Stmt } from "./kir";
import { W, WarpRun, type SimArray, type SimObserver } from "./simulate-warp";

export type { SimArray, SimObserver } from "./simulate-warp";

/**
 * Runs `workgroups` workgroups of kernel k over its buffers (by name) with its uniforms' values. A
 * grid barrier (gridSync, at the body's top level) splits the body: every workgroup runs to it before
 * any goes on (workgroup memory kept; locals do not cross it), its word's top bit flips, and its
 * last-arrival work runs (as the last workgroup) before the next segment.
 */
export function simulate(k: Kernel, buffers: Record<string, SimArray>, uniforms: Record<string, number>, workgroups: number, observe: SimObserver = {}): void {
  for (const b of k.buffers) if (!buffers[b.name]) throw new Error(`simulate ${k.name}: no buffer for ${b.name}`);
  for (const u of k.uniforms) if (uniforms[u] === undefined) throw new Error(`simulate ${k.name}: no value for ${u}`);
  const elem = new Map(k.buffers.map((b) => [b.name, b.elem]));
  const segments: Stmt[][] = [[...(k.preWait ?? [])]];
  for (const st of k.body) {
    if (st.k === "gridSync") {
      if (JSON.stringify(st.last ?? []).includes('"gridSync"')) throw new Error(`simulate ${k.name}: a grid barrier inside a grid barrier's last-arrival work`);
      segments.push([]);
    } else if (JSON.stringify(st).includes('"gridSync"')) throw new Error(`simulate ${k.name}: a grid barrier inside a ${st.k} (it must be at the body's top level)`);
    else segments[segments.length - 1]!.push(st);
  }
  const shared = Array.from({ length: workgroups }, () => new Map<string, { t: KType; a: Float64Array }>(k.shared.map((s) => [s.name, { t: s.t, a: new Float64Array(s.size) }])));
  segments.forEach((body, j) => {
    if (j > 0) {
      const bar = k.body.filter((st) => st.k === "gridSync")[j - 1] as { buf: string; last?: Stmt[] };
      // Its words as CUDA's lingc::grid_sync leaves them: the count's top bit flipped (the low bits as
      // they were); with last-arrival work, the generation advanced.
      const words = buffers[bar.buf]!;
      if (words.length < (bar.last ? 2 : 1)) throw new Error(`simulate ${k.name}: grid barrier buffer ${bar.buf} needs ${bar.last ? "two words" : "a word"}`);
      words[0] = (words[0]! ^ 0x80000000) | 0;
      // The last to arrive runs the work (here the last workgroup: the work may not depend on which).
      if (bar.last) {
        runWorkgroup(k, bar.last, workgroups - 1, workgroups, buffers, elem, shared[workgroups - 1]!, uniforms, observe);
        words[1] = words[1]! + 1;
      }
    }
    for (let wg = 0; wg < workgroups; wg++) runWorkgroup(k, body, wg, workgroups, buffers, elem, shared[wg]!, uniforms, observe);
  });
}

/** One workgroup of kernel k through `body`: its warps interleaved a statement at a time, meeting at each barrier. */
function runWorkgroup(k: Kernel, body: Stmt[], wg: number, workgroups: number, buffers: Record<string, SimArray>, elem: Map<string, string>, shared: Map<string, { t: KType; a: Float64Array }>, uniforms: Record<string, number>, observe: SimObserver): void {
  // A workgroup of fewer threads than whole warps has lanes that never run (past wg).
  const runs = Array.from({ length: Math.ceil(k.wg / W) }, (_, w) => new WarpRun(k, w, wg, workgroups, buffers, elem, shared, uniforms, observe));
  const warps = runs.map((run, w) => run.run(body, Array.from({ length: W }, (_, l) => w * W + l < k.wg)));
  // The warps interleaved a statement at a time (so that a read of workgroup memory that another
  // warp writes without a barrier between gets the wrong value here too), each held at a barrier
  // until every warp still running has reached one (a barrier among the first warps: until each of
  // those has reached it).
  const state: ("run" | "barrier" | "narrow" | "done" | "wait")[] = warps.map(() => "run");
  while (state.some((x) => x !== "done")) {
    if (!state.includes("run") && !state.includes("wait")) {
      const narrow = state.findIndex((x) => x === "narrow");
      if (narrow >= 0) {
        const need = runs[narrow]!.narrow / W;
        const met = state.every((x, w) => (w < need) === (x === "narrow" && runs[w]!.narrow === runs[narrow]!.narrow));
        if (!met) throw new Error(`simulate ${k.name}: a barrier among the first ${runs[narrow]!.narrow} threads of workgroup ${wg} that not all of them reach`);
        for (let w = 0; w < need; w++) state[w] = "run";
        continue;
      }
      if (state.includes("done")) throw new Error(`simulate ${k.name}: a barrier that some warps of workgroup ${wg} do not reach (they finished)`);
      state.fill("run");
    }
    // A round in which every warp that could go on only waited on an mbarrier moved nothing.
    let moved = false;
    warps.forEach((g, w) => {
      if (state[w] !== "run" && state[w] !== "wait") return;
      const r = g.next();
      state[w] = r.done ? "done" : r.value;
      if (state[w] !== "wait") moved = true;
    });
    if (!moved) throw new Error(`simulate ${k.name}: the warps of workgroup ${wg} wait on mbarriers that no warp will complete (a deadlock)`);
  }
}
