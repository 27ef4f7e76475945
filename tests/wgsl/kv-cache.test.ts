/**
 * The KV cache on WebGPU stays on the GPU and grows in place: the decode graph's only writer of a
 * cache input is the kernel that computes its new rows (qk_norm_rope, with the cache appends fused
 * into it; cache_append kernels where that fusion is off), sized by the new rows (not the cache), and greedy
 * generation moves the cache into a buffer with room once per batch, then runs every decode step
 * on the device, giving the golden tokens (from the prompt's logits read back at its last position
 * only). Chained (GenerateOptions.chainSteps), each step is launched before the last is read back,
 * fed the tokens the GPU chose, with the same tokens; a device choice that differs from the logits'
 * argmax is refused. A decode run from host tensors (lingc run) gets the same
 * numbers as the interpreter.
 */
import { beforeAll, describe, expect, it } from "vitest";
import { isDeviceTensor, type DeviceTensor, type LoadedModel } from "../../backends/backend";
import { generate, greedyGenerate } from "../../backends/generation";
import { compileWgsl } from "../../backends/wgsl/compile";
import { evalTerms } from "../../backends/wgsl/artifact";
import { compileProgram } from "../../compiler/driver/compile";
import { openSource } from "../../compiler/driver/source";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { Tensor } from "../../ir/tensor";
import { loadCheckpoint, type TestModel } from "../support/load";
import { tensorDiff } from "../support/compare";
import { GOLDEN_DIR, GOLDEN_FILE } from "../support/paths";
import { goldenGreedy } from "../support/golden";
import type { WebGpuProfile } from "../../ir/target";

const golden = readAllSafetensors(GOLDEN_FILE);
const { prompts, tokens: wantIds, steps } = goldenGreedy(golden);

describe("the WGSL decode graph", () => {
  it.each([
    ["qk_norm_rope", [], 2 * (4 + 2 + 2)], // B x (query + key + value heads) workgroups
    ["cache_append", ["qk_norm_rope"], 2 * 2 * 16], // B x kv heads x head dim threads
  ])("writes its cache inputs only with %s kernels sized by the new rows", async (writer, noFuse, threads) => {
    const { program } = await compileProgram({ source: await openSource(GOLDEN_DIR), target: "wgsl", graphs: ["decode"], settings: { noFuse } });
    const a = compileWgsl(program.graphs[0]!, program.profile as WebGpuProfile);
    const grown = a.slots.filter((s) => s.grows);
    expect(grown.map((s) => s.name).sort()).toEqual(a.inputs.filter((i) => i.name.startsWith("past.")).map((i) => i.name).sort());
    const storage = (id: number): number => {
      const s = a.slots[id]!;
      return s.source === "alias" ? storage(s.aliasOf!) : id;
    };
    for (const g of grown) {
      const writers = a.kernels.filter((k) => k.bindings.some((b) => b.write && storage(b.slot) === g.id));
      expect(writers.map((k) => k.fusion)).toEqual([writer]);
      // Sized by a step of S = 1 token, the same for a cache of 10 or 1000 positions.
      const at = (P: number) => evalTerms(writers[0]!.grid.dim, new Map([["B", 2], ["S", 1], ["P", P]]));
      expect(at(10)).toBe(at(1000));
      expect(at(10)).toBe(threads);
    }
  });
});

describe("greedy generation on wgsl", () => {
  let model: TestModel;
  beforeAll(async () => {
    model = await loadCheckpoint("wgsl", GOLDEN_DIR);
  }, 120_000);

  it("keeps the cache on the GPU: one move into a buffer with room per cache, then in-place decode steps", async () => {
    const calls = { run: 0, onDevice: 0, last: 0, reserve: 0, release: 0 };
    const counted: LoadedModel = {
      ...model,
      graphs: Object.fromEntries(
        Object.entries(model.graphs).map(([n, g]) => [
          n,
          {
            run: (i, o) => (calls.run++, g.run(i, o)),
            runOnDevice: async (i, keep, last) => {
              calls.onDevice++;
              const out = await g.runOnDevice!(i, keep, last);
              // The caches come back on the device; only the logits are read back, a prompt's
              // at its last position only.
              for (const k of keep) expect(isDeviceTensor(out[k]!)).toBe(true);
              for (const k of last ?? []) {
                calls.last++;
                expect((out[k] as Tensor).shape[1]).toBe(1);
              }
              return out;
            },
          },
        ]),
      ),
      reserve: (t: DeviceTensor, axis: number, rows: number) => (calls.reserve++, model.reserve!(t, axis, rows)),
      release: (t: DeviceTensor) => (calls.release++, model.release!(t)),
    };
    const r = await greedyGenerate(counted, prompts, steps);
    expect(r.tokens).toEqual(wantIds);
    const caches = 2 * 3; // key and value, 3 layers
    const batches = new Set(prompts.map((p) => p.length)).size;
    expect(calls).toEqual({ run: 0, onDevice: batches * steps, last: batches, reserve: batches * caches, release: 2 * batches * caches });
  });

  it("chains greedy steps: each launched before the last is read back, fed the tokens the GPU chose", async () => {
    const calls = { launch: 0, reserve: 0, release: 0 };
    let corrupt = false;
    const chained: LoadedModel = {
      ...model,
      graphs: Object.fromEntries(
        Object.entries(model.graphs).map(([n, g]) => [
          n,
          {
            run: () => Promise.reject(new Error("not the chained path")),
            runOnDevice: () => Promise.reject(new Error("not the chained path")),
            launchOnDevice: async (i, keep, opts) => {
              calls.launch++;
              const l = await g.launchOnDevice!(i, keep, opts);
              for (const k of keep) expect(isDeviceTensor(l.kept[k]!)).toBe(true);
              expect(l.nextToken.shape).toEqual([i[Object.keys(i)[0]!]!.shape[0], 1]);
              // A device that chose another token than the logits' argmax must not pass unnoticed.
              if (corrupt) return { ...l, read: l.read.then((r) => ({ ...r, nextToken: r.nextToken.map((t) => t + 1) })) };
              return l;
            },
          },
        ]),
      ),
      reserve: (t: DeviceTensor, axis: number, rows: number) => (calls.reserve++, model.reserve!(t, axis, rows)),
      release: (t: DeviceTensor) => (calls.release++, model.release!(t)),
    };
    const r = await generate(chained, prompts, steps, { chainSteps: true });
    expect(r.tokens).toEqual(wantIds);
    const caches = 2 * 3;
    const batches = new Set(prompts.map((p) => p.length)).size;
    // A launch per step; released: each prefill's caches (moved into room) and each batch's at the end, and every launch's ids.
    expect(calls).toEqual({ launch: batches * steps, reserve: batches * caches, release: 2 * batches * caches + batches * steps });
    corrupt = true;
    await expect(generate(chained, prompts, steps, { chainSteps: true })).rejects.toThrow(/the device chose token \d+ for sequence 1 at step 1, where the argmax of the logits read back is \d+/);
  });

  it("a decode step from host tensors gives the interpreter's numbers", async () => {
    const interp = await loadCheckpoint("interp", GOLDEN_DIR);
    const B = 2;
    const P = 5;
    const inputs: Record<string, Tensor> = { input_ids: Tensor.from("i64", [B, 1], [3, 7]) };
    let seed = 1;
    const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1;
    for (let i = 0; i < 3; i++) for (const kv of ["key", "value"]) inputs[`past.${i}.${kv}`] = Tensor.from("f32", [B, 2, P, 16], Array.from({ length: B * 2 * P * 16 }, rnd));
    const want = await interp.decode.run(inputs);
    const got = await model.decode.run(inputs);
    for (const name of Object.keys(want)) expect(tensorDiff(got[name]!, want[name]!), name).toBeLessThanOrEqual(1e-5);
    expect(got["present.2.value"]!.shape).toEqual([B, 2, P + 1, 16]);
  });
});
