/**
 * Storage lifetimes of the folded CUDA host (backends/frames-memory.ts) on ling-tiny's train graph
 * with a recompute plan (layer functions return what their backward keeps, some of it also a layer
 * result): in every function, storage is allocated before any step uses it and never used after it
 * is freed; what a function computes is freed exactly once unless it returns it; two results of one
 * call that share the callee's storage are one storage (freeing one must not free the other while it
 * is used). And the predicted activation peak of a Ling-mini-shaped model: full recompute < the plan
 * at 50% < no recompute.
 */
import { describe, expect, it } from "vitest";
import "../../ir/ops";
import { buildFrames } from "../../backends/frames";
import { cudaMemoryPrediction } from "../../backends/cuda/emit";
import { storageLifetimes } from "../../backends/frames-memory";
import { storageSlot } from "../../backends/schedule";
import { compileProgram } from "../../compiler/driver/compile";
import { openSource } from "../../compiler/driver/source";
import { GOLDEN_DIR } from "../support/paths";

const TAIL = "fusion{profile=cuda-sm90a},select{profile=cuda-sm90a}";
const program = async (passes: string, model = GOLDEN_DIR) => (await compileProgram({ source: await openSource(model), target: "cuda", passes, graphs: ["train"] })).program;

describe("storage lifetimes of the folded host", () => {
  it("allocate before first use, free after last use, once, and keep returned storage", async () => {
    const p = await program(`cse,dce,recompute{budget=50%,at=B=2;S=12},${TAIL}`);
    const frames = buildFrames(p.graphs[0]!);
    const byName = new Map(frames.map((f) => [f.func.name, f]));
    const residents = new Map<string, Set<number>>();
    let shared = 0;
    for (const fr of frames) {
      const life = storageLifetimes(fr, byName, residents);
      const freed = new Map<number, number>();
      const acquired = new Set<number>();
      life.release.forEach((rs, n) => rs.forEach((r) => freed.set(r, n)));
      expect(new Set(life.release.flat()).size, fr.func.name).toBe(life.release.flat().length);
      fr.steps.forEach((s, n) => {
        life.acquire[n]!.forEach((r) => acquired.add(r));
        const ids = s.call !== undefined ? [...fr.calls[s.call]!.args, ...fr.calls[s.call]!.results] : [...s.step!.reads.values(), ...s.step!.writes.values()];
        for (const id of ids) {
          const st = storageSlot(fr, id);
          if (fr.slots[st]!.source === "computed") expect(acquired.has(st), `${fr.func.name} step ${n} uses slot ${st} before it is allocated`).toBe(true);
          const at = freed.get(st);
          if (at !== undefined) expect(n, `${fr.func.name} step ${n} uses slot ${st} freed after step ${at}`).toBeLessThanOrEqual(at);
        }
      });
      for (const r of fr.results) expect(freed.has(storageSlot(fr, r)), `${fr.func.name} frees its result`).toBe(false);
      // Call results that the callee returns from one storage: only one of them is ever freed.
      const byStorage = new Map<string, number[]>();
      fr.slots.forEach((sl) => {
        if (sl.source !== "call") return;
        const callee = byName.get(fr.calls[sl.call!.site]!.callee.name)!;
        const key = `${sl.call!.site}:${storageSlot(callee, callee.results[sl.call!.result]!)}`;
        byStorage.set(key, [...(byStorage.get(key) ?? []), sl.id]);
      });
      for (const ids of byStorage.values()) {
        if (ids.length < 2) continue;
        shared++;
        expect(ids.filter((id) => freed.has(id)).length, `${fr.func.name}: slots ${ids} share storage`).toBeLessThanOrEqual(1);
      }
    }
    expect(shared, "the plan keeps values that are also layer results").toBeGreaterThan(0);
  }, 60_000);

  it("predicts less activation memory for more recompute (Ling-mini's shapes, 4 layers, sequence 4096)", async () => {
    const sizes = new Map([["B", 1], ["S", 4096]]);
    const act = async (passes: string) => {
      const p = await program(passes, "bench/cuda/ling-mini-4l");
      const r = cudaMemoryPrediction(p, p.graphs[0]!, sizes);
      return r.peak - r.end;
    };
    const full = await act(`cse,dce,${TAIL}`);
    const half = await act(`cse,dce,recompute{budget=50%},${TAIL}`);
    const none = await act(`cse,dce,recompute{budget=none},${TAIL}`);
    expect(full).toBeLessThan(half);
    expect(half).toBeLessThan(none);
  }, 60_000);
});
