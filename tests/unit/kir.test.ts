/** The float literal text both GPU renderers write (WGSL and CUDA C++). */
import { describe, expect, it } from "vitest";
import { f32Text, KernelBuilder } from "../../backends/kernels/kir";
import * as K from "../../backends/kernels/kir";
import { renderCuda } from "../../backends/cuda/render";
import { renderWgsl } from "../../backends/wgsl/render";
import { simulate } from "../../backends/kernels/simulate";
import { GRID_SYNC, mergeKernels, mergePhases, mergeTail, MERGE_SPLIT, phaseCount, TAIL_COUNTERS, TAIL_FIRST, tailCount } from "../../backends/kernels/kir-merge";

describe("f32Text", () => {
  it("writes the shortest text that reads back as the same f32, keeping the sign of zero", () => {
    expect(f32Text(3)).toBe("3.0f");
    expect(f32Text(0.5)).toBe("0.5f");
    expect(f32Text(0.1)).toBe("0.1f");
    expect(f32Text(1e-6)).toBe("0.000001f");
    expect(f32Text(0)).toBe("0.0f");
    expect(f32Text(-0)).toBe("-0.0f");
    expect(f32Text(3.4028234663852886e38)).toBe("3.4028235e+38f");
    const t = f32Text(Math.PI);
    expect(Math.fround(Number(t.slice(0, -1)))).toBe(Math.fround(Math.PI));
  });
});

describe("workgroup reductions", () => {
  /** A kernel that sums one value per thread of a 128-thread workgroup and stores the total. */
  const sumKernel = (warpSize?: number) => {
    const kb = new KernelBuilder("sum", 128, warpSize);
    const out = kb.buffer("out", "f32", true);
    const total = kb.workgroupSum(K.toF(kb.lid));
    kb.store(out, kb.wg, total);
    return kb.kernel;
  };
  const count = (text: string, what: string) => text.split(what).length - 1;

  it("with warp shuffles: each warp by shuffles, the warps' sums through workgroup memory, two barriers", () => {
    const cuda = renderCuda(sumKernel(32));
    expect(count(cuda, "__shfl_xor_sync")).toBe(5); // masks 16, 8, 4, 2, 1
    expect(count(cuda, "__syncthreads()")).toBe(2);
    expect(cuda).toMatch(/float red_\d+\[4\]/); // one partial per warp
  });

  it("without them (WebGPU): a tree through workgroup memory, log2(wg) + 2 barriers", () => {
    const wgsl = renderWgsl(sumKernel());
    expect(count(wgsl, "workgroupBarrier()")).toBe(9);
    expect(wgsl).not.toContain("subgroup");
    expect(count(renderCuda(sumKernel()), "__syncthreads()")).toBe(9);
  });
});

describe("index folding of a thread's run of elements", () => {
  /** Integer value of an index expression over the variable "x" (kir's i32 / and % truncate, as C and WGSL do). */
  const evalI = (e: K.Expr, x: number): number => {
    if (e.k === "lit") return e.v;
    if (e.k === "ref") return x;
    if (e.k !== "bin") throw new Error(`unexpected ${e.k}`);
    const [a, b] = [evalI(e.a, x), evalI(e.b, x)];
    if (e.op === "+") return a + b;
    if (e.op === "*") return a * b;
    if (e.op === "/") return Math.trunc(a / b);
    if (e.op === "%") return a % b;
    throw new Error(`unexpected ${e.op}`);
  };
  const x: K.Expr = { k: "ref", t: "i32", name: "x" };

  it("divides and reduces x C + u by a multiple of C as x alone, and stays exact", () => {
    const C = 4;
    const at = (u: number) => (u === 0 ? K.mul(x, K.i(C)) : K.add(K.mul(x, K.i(C)), K.i(u)));
    // The row and column of element u of run x in rows of 2048: x's own index math, one division.
    expect(K.divI(at(3), K.i(2048))).toEqual(K.div(x, K.i(512)));
    expect(K.modI(at(3), K.i(2048))).toEqual(K.add(K.mul(K.mod(x, K.i(512)), K.i(4)), K.i(3)));
    for (const L of [4, 8, 12, 2048]) {
      for (let xv = 0; xv < 700; xv++) {
        for (let u = 0; u < C; u++) {
          expect(evalI(K.divI(at(u), K.i(L)), xv)).toBe(Math.trunc((xv * C + u) / L));
          expect(evalI(K.modI(at(u), K.i(L)), xv)).toBe((xv * C + u) % L);
        }
      }
    }
  });

  it("leaves what it cannot fold: a divisor C does not divide, or an offset past the run", () => {
    expect(K.divI(K.add(K.mul(x, K.i(4)), K.i(1)), K.i(6))).toEqual(K.div(K.add(K.mul(x, K.i(4)), K.i(1)), K.i(6)));
    expect(K.divI(K.add(K.mul(x, K.i(4)), K.i(4)), K.i(8))).toEqual(K.div(K.add(K.mul(x, K.i(4)), K.i(4)), K.i(8)));
  });
});

describe("two kernels as one launch (kir-merge)", () => {
  /**
   * Each workgroup sums its rows' values (workgroup memory, barriers, a uniform size) and writes the
   * sum times a constant: the same locals' names in both kernels (one builder's counter each).
   */
  const rowSums = (name: string, scale: number) => {
    const kb = new KernelBuilder(name, 64, 32);
    const x = kb.buffer("b0", "f32");
    const y = kb.buffer("b1", "f32", true);
    const n = kb.uniform("n_rows");
    kb.if(K.lt(kb.wg, n), () => {
      const total = kb.workgroupSum(kb.load(x, K.add(K.mul(kb.wg, K.i(64)), kb.lid)));
      kb.if(K.eq(kb.lid, K.i(0)), () => kb.store(y, kb.wg, K.mul(total, K.f(scale))));
    });
    return kb.kernel;
  };

  it("runs each kernel's workgroups on their own data and names, as the two launches would", () => {
    const [a, b] = [rowSums("a", 2), rowSums("b", -3)];
    const merged = mergeKernels(a, b, "ab");
    expect(merged.buffers.map((x) => x.name)).toEqual(["b0", "b1", "b0_m", "b1_m"]);
    expect(merged.uniforms).toEqual(["n_rows", "n_rows_m", MERGE_SPLIT]);
    expect(new Set(merged.shared.map((x) => x.name)).size).toBe(merged.shared.length);
    const xa = Float32Array.from({ length: 3 * 64 }, (_, j) => (j % 7) - 3);
    const xb = Float32Array.from({ length: 2 * 64 }, (_, j) => (j % 5) * 0.5);
    const [ya, yb] = [new Float32Array(3), new Float32Array(2)];
    simulate(a, { b0: xa, b1: ya }, { n_rows: 3 }, 3);
    simulate(b, { b0: xb, b1: yb }, { n_rows: 2 }, 2);
    const [ma, mb] = [new Float32Array(3), new Float32Array(2)];
    simulate(merged, { b0: xa, b1: ma, b0_m: xb, b1_m: mb }, { n_rows: 3, n_rows_m: 2, [MERGE_SPLIT]: 3 }, 5);
    expect([...ma]).toEqual([...ya]);
    expect([...mb]).toEqual([...yb]);
    expect(ya.some((v) => v !== 0) && yb.some((v) => v !== 0)).toBe(true);
    // CUDA: one kernel, the second body's names suffixed, its workgroup index offset by the split.
    const cuda = renderCuda(merged);
    expect(cuda).toContain(`if ((wgid < ${MERGE_SPLIT}))`);
    expect(cuda).toContain(`(wgid - ${MERGE_SPLIT})`);
    expect(() => mergeKernels(a, new KernelBuilder("c", 128, 32).kernel, "ac")).toThrow(/different workgroup sizes/);
    const taken = new KernelBuilder("d", 64, 32);
    taken.buffer("b0_m", "f32");
    expect(() => mergeKernels(taken.kernel, a, "da")).toThrow(/d already has a name b0_m/);
  });
});

// The merges' test kernels (mergeTail, mergePhases).
/** Each workgroup of 64 threads sums its row of b0 into b1[wg] (barriers: a workgroup sum). */
const rowSums = () => {
  const kb = new KernelBuilder("rows", 64, 32);
  const x = kb.buffer("b0", "f32");
  const y = kb.buffer("b1", "f32", true);
  const total = kb.workgroupSum(kb.load(x, K.add(K.mul(kb.wg, K.i(64)), kb.lid)));
  kb.if(K.eq(kb.lid, K.i(0)), () => kb.store(y, kb.wg, total));
  return kb.kernel;
};
/** 32 threads, no barriers: workgroup w writes b1[w] = 2 b0[2w] + b0[2w + 1] (its lane 0). */
const pairsOf = () => {
  const kb = new KernelBuilder("pairs", 32, 32);
  const x = kb.buffer("b0", "f32");
  const y = kb.buffer("b1", "f32", true);
  kb.if(K.eq(kb.lid, K.i(0)), () => kb.store(y, kb.wg, K.add(K.mul(kb.load(x, K.mul(kb.wg, K.i(2))), K.f(2)), kb.load(x, K.add(K.mul(kb.wg, K.i(2)), K.i(1))))));
  return kb.kernel;
};

describe("a dependent kernel run by the last workgroup of the one before it (mergeTail)", () => {
  it("gives what the launches give, a tail reading the one before it, and leaves its counter at zero", () => {
    // rows (6 workgroups) -> pairs (3, reading rows' sums) -> pairs again (1, reading the first pairs').
    const merged = mergeTail(rowSums(), [{ kernel: pairsOf(), same: new Map([["b0", "b1"]]) }, { kernel: pairsOf(), same: new Map([["b0", "b1_t1"]]) }], "tail");
    expect(merged.wg).toBe(64);
    expect(merged.uniforms).toEqual([TAIL_FIRST, tailCount(1), tailCount(2)]);
    expect(merged.buffers.map((b) => b.name)).toEqual(["b0", "b1", "b1_t1", "b1_t2", TAIL_COUNTERS]);
    const x = Float32Array.from({ length: 6 * 64 }, (_, j) => ((j * 7) % 11) - 5);
    const [sums, once, twice] = [new Float32Array(6), new Float32Array(3), new Float32Array(1)];
    simulate(rowSums(), { b0: x, b1: sums }, {}, 6);
    simulate(pairsOf(), { b0: sums, b1: once }, {}, 3);
    simulate(pairsOf(), { b0: once, b1: twice }, {}, 1);
    const [ms, m1, m2, counters] = [new Float32Array(6), new Float32Array(3), new Float32Array(1), new Int32Array(4)];
    simulate(merged, { b0: x, b1: ms, b1_t1: m1, b1_t2: m2, [TAIL_COUNTERS]: counters }, { [TAIL_FIRST]: 6, [tailCount(1)]: 3, [tailCount(2)]: 1 }, 6);
    expect([...m1]).toEqual([...once]);
    expect([...m2]).toEqual([...twice]);
    expect(twice[0]).not.toBe(0);
    expect([...counters]).toEqual([0, 0, 0, 0]);
    // CUDA: fence, count, and the last workgroup runs each tail's workgroups in a loop; the tails read the results through the writers' parameters.
    const cuda = renderCuda(merged);
    expect(cuda).toContain("atomicAdd");
    expect(cuda).toContain(`tail_wg_t2 < ${tailCount(2)}`);
    expect(cuda).not.toContain("b0_t1");
  });

  it("refuses a narrower kernel with barriers (its threads would miss the wider workgroup's), and a tail's read of a buffer nothing before it writes", () => {
    const wide = new KernelBuilder("wide", 128, 32).kernel;
    expect(() => mergeTail(wide, [{ kernel: rowSums() }], "t")).toThrow(/rows has barriers in a workgroup of 64 threads, not 128/);
    expect(() => mergeTail(rowSums(), [{ kernel: pairsOf(), same: new Map([["b0", "b0"]]) }], "t")).toThrow(/pairs's b0 is not a buffer an earlier kernel writes \(b0\)/);
  });
});

describe("dependent kernels as the phases of one launch, a grid barrier between (mergePhases)", () => {
  // rows (6 workgroups) -> pairs (3, reading rows' sums) -> pairs again (1, reading the first pairs').
  const merged = () => mergePhases([{ kernel: rowSums() }, { kernel: pairsOf(), same: new Map([["b0", "b1"]]) }, { kernel: pairsOf(), same: new Map([["b0", "b1_p1"]]) }], "phases");
  const x = Float32Array.from({ length: 6 * 64 }, (_, j) => ((j * 7) % 11) - 5);
  const expected = () => {
    const [sums, once, twice] = [new Float32Array(6), new Float32Array(3), new Float32Array(1)];
    simulate(rowSums(), { b0: x, b1: sums }, {}, 6);
    simulate(pairsOf(), { b0: sums, b1: once }, {}, 3);
    simulate(pairsOf(), { b0: once, b1: twice }, {}, 1);
    return { once, twice };
  };
  const run = (k: K.Kernel, grid: number) => {
    const [ms, m1, m2, bar] = [new Float32Array(6), new Float32Array(3), new Float32Array(1), new Int32Array(1)];
    simulate(k, { b0: x, b1: ms, b1_p1: m1, b1_p2: m2, [GRID_SYNC]: bar }, { [phaseCount(0)]: 6, [phaseCount(1)]: 3, [phaseCount(2)]: 1 }, grid);
    return { m1, m2, bar };
  };

  it("gives what the launches give on any grid up to the largest phase's, each phase's workgroups visited in a strided loop", () => {
    const k = merged();
    expect(k.wg).toBe(64);
    expect(k.uniforms).toEqual([phaseCount(0), phaseCount(1), phaseCount(2)]);
    expect(k.buffers.map((b) => b.name)).toEqual(["b0", "b1", "b1_p1", "b1_p2", GRID_SYNC]);
    const { once, twice } = expected();
    expect(twice[0]).not.toBe(0);
    for (const grid of [6, 4, 2, 1]) {
      const { m1, m2, bar } = run(k, grid);
      expect([...m1]).toEqual([...once]);
      expect([...m2]).toEqual([...twice]);
      // Two grid barriers: the word's top bit flipped twice (as CUDA's lingc::grid_sync leaves it).
      expect([...bar]).toEqual([0]);
    }
  });

  it("is wrong without its grid barriers (the test can fail), and renders them in CUDA but not in WGSL", () => {
    const k = merged();
    const unsynced = { ...k, body: k.body.filter((s) => s.k !== "gridSync") };
    const { once } = expected();
    expect([...run(unsynced, 2).m1]).not.toEqual([...once]);
    const cuda = renderCuda(k);
    expect(cuda.match(/lingc::grid_sync\(grid_sync, nwg\)/g)).toHaveLength(2);
    expect(cuda).toContain("const int nwg = (int)(gridDim.x * gridDim.y);");
    expect(cuda).toContain(`for (int phase_wg_1 = wgid; phase_wg_1 < ${phaseCount(1)}; phase_wg_1 += nwg)`);
    expect(cuda).not.toContain("b0_p1");
    expect(() => renderWgsl(k)).toThrow(/grid|workgroups launched/);
  });

  it("runs serial phases in the last workgroup to arrive at the barrier before them, one barrier for a run of them (CUDA grid_arrive, grid_release, grid_wait)", () => {
    // rows (6 workgroups) -> pairs (3) and pairs (1), both serial: one barrier, not two.
    const k = mergePhases([{ kernel: rowSums() }, { kernel: pairsOf(), same: new Map([["b0", "b1"]]), serial: true }, { kernel: pairsOf(), same: new Map([["b0", "b1_p1"]]), serial: true }], "phases");
    const syncs = k.body.filter((s) => s.k === "gridSync");
    expect(syncs.map((s) => (s.k === "gridSync" ? s.last?.length : -1))).toEqual([2]);
    const { once, twice } = expected();
    for (const grid of [6, 2, 1]) {
      const [ms, m1, m2, bar] = [new Float32Array(6), new Float32Array(3), new Float32Array(1), new Int32Array(2)];
      simulate(k, { b0: x, b1: ms, b1_p1: m1, b1_p2: m2, [GRID_SYNC]: bar }, { [phaseCount(0)]: 6, [phaseCount(1)]: 3, [phaseCount(2)]: 1 }, grid);
      expect([...m1]).toEqual([...once]);
      expect([...m2]).toEqual([...twice]);
      // One barrier: the count's top bit flipped once, the generation moved once.
      expect([...bar]).toEqual([-(2 ** 31), 1]);
    }
    const cuda = renderCuda(k);
    expect(cuda).toMatch(/griddepcontrol\.wait;" ::: "memory"\);\n  unsigned gen_ = lingc::grid_generation\(grid_sync\);\n/);
    expect(cuda).toMatch(/\n\s*if \(lingc::grid_arrive\(grid_sync, nwg\)\) \{\n\s*#pragma unroll 1\n\s*for \(int phase_wg_1 = 0; phase_wg_1 < phase_wgs_1; phase_wg_1 \+= 1\)[^]*lingc::grid_release\(grid_sync\);\n\s*\} else \{\n\s*lingc::grid_wait\(grid_sync, gen_\);\n\s*\}\n\s*\+\+gen_;/);
    expect(cuda).not.toContain("lingc::grid_sync(");
    expect(() => mergePhases([{ kernel: rowSums(), serial: true }, { kernel: pairsOf(), same: new Map([["b0", "b1"]]) }], "p")).toThrow(/first phase \(rows\) cannot be serial/);
  });

  it("runs a narrower kernel with barriers in its first threads, its barriers among those threads (CUDA named barrier 1)", () => {
    // A 128-thread phase that doubles b0 into b1, then rows (64 threads, a workgroup sum) of b1.
    const kb = new KernelBuilder("twice", 128, 32);
    const [xin, xout] = [kb.buffer("b0", "f32"), kb.buffer("b1", "f32", true)];
    kb.for("j", K.i(0), K.i(3), (j) => kb.store(xout, K.add(K.mul(kb.wg, K.i(384)), K.add(K.mul(j, K.i(128)), kb.lid)), K.mul(kb.load(xin, K.add(K.mul(kb.wg, K.i(384)), K.add(K.mul(j, K.i(128)), kb.lid))), K.f(2))));
    const k = mergePhases([{ kernel: kb.kernel }, { kernel: rowSums(), same: new Map([["b0", "b1"]]) }], "p");
    expect(k.wg).toBe(128);
    const [doubled, sums, bar] = [new Float32Array(6 * 64), new Float32Array(6), new Int32Array(2)];
    simulate(k, { b0: x, b1: doubled, b1_p1: sums, [GRID_SYNC]: bar }, { [phaseCount(0)]: 1, [phaseCount(1)]: 6 }, 4);
    const want = new Float32Array(6);
    simulate(rowSums(), { b0: Float32Array.from(x, (v) => 2 * v), b1: want }, {}, 6);
    expect([...sums]).toEqual([...want]);
    expect(renderCuda(k)).toContain(`asm volatile("bar.sync 1, 64;" ::: "memory");`);
  });

  it("refuses a narrower kernel with barriers that is not whole warps, a kernel already grid-synced, and a read of a buffer no earlier phase writes", () => {
    const wide = new KernelBuilder("wide", 128, 32).kernel;
    const ragged = new KernelBuilder("ragged", 48, 32);
    ragged.workgroupSum(K.toF(ragged.lid));
    expect(() => mergePhases([{ kernel: wide }, { kernel: ragged.kernel }], "p")).toThrow(/ragged has barriers in a workgroup of 48 threads, not whole warps/);
    expect(() => mergePhases([{ kernel: merged() }, { kernel: pairsOf() }], "p")).toThrow(/already grid-synced/);
    expect(() => mergePhases([{ kernel: rowSums() }, { kernel: pairsOf(), same: new Map([["b0", "b0"]]) }], "p")).toThrow(/pairs's b0 is not a buffer an earlier phase writes \(b0\)/);
  });
});

describe("prefetches before the wait for the previous kernel (Kernel.preWait)", () => {
  /** Each workgroup copies its 16-float row of b0 to b1, its row of b0 prefetched first (64 bytes, by thread 0). */
  const rowCopy = (name: string) => {
    const kb = new KernelBuilder(name, 16, 32);
    const x = kb.buffer("b0", "f32");
    const y = kb.buffer("b1", "f32", true);
    kb.beforeWait(() => kb.if(K.eq(kb.lid, K.i(0)), () => kb.prefetchL2(x, K.mul(kb.wg, K.i(64)), K.i(64))));
    kb.store(y, K.add(K.mul(kb.wg, K.i(16)), kb.lid), kb.load(x, K.add(K.mul(kb.wg, K.i(16)), kb.lid)));
    return kb.kernel;
  };

  it("CUDA: the prefetch after launch_dependents and before griddepcontrol.wait; WGSL renders none; the simulator sees each range once", () => {
    const k = rowCopy("pc");
    const cuda = renderCuda(k);
    const [dep, pre, wait, load] = ["griddepcontrol.launch_dependents", "cp.async.bulk.prefetch.L2.global", "griddepcontrol.wait", "b1["].map((t) => cuda.indexOf(t));
    expect(dep).toBeGreaterThan(0);
    expect(pre).toBeGreaterThan(dep);
    expect(wait).toBeGreaterThan(pre);
    expect(load).toBeGreaterThan(wait);
    expect(renderWgsl(k)).not.toContain("prefetch");
    const seen: [string, number, number][] = [];
    const y = new Float32Array(48);
    simulate(k, { b0: Float32Array.from({ length: 48 }, (_, j) => j), b1: y }, {}, 3, { prefetch: (buf, byte, bytes) => seen.push([buf, byte, bytes]) });
    expect(seen).toEqual([["b0", 0, 64], ["b0", 64, 64], ["b0", 128, 64]]);
    expect([...y]).toEqual(Array.from({ length: 48 }, (_, j) => j));
    // A fourth workgroup's range is past the buffer: the simulator says so.
    expect(() => simulate(k, { b0: new Float32Array(48), b1: new Float32Array(64) }, {}, 4)).toThrow(/prefetch of bytes 192 \.\. \+64 of b0 \(192 bytes/);
  });

  it("refuses statements that could see another kernel's results before the wait: a load in a range, a store", () => {
    const kb = new KernelBuilder("bad", 32, 32);
    const x = kb.buffer("b0", "f32");
    kb.beforeWait(() => kb.prefetchL2(x, K.mul(K.toI(kb.load(x, K.i(0))), K.i(16)), K.i(16)));
    expect(() => renderCuda(kb.kernel)).toThrow(/bad's statements before the wait must not depend on other kernels, but it has a prefetch's range reads memory/);
    const kb2 = new KernelBuilder("bad2", 32, 32);
    const y = kb2.buffer("b0", "f32", true);
    kb2.beforeWait(() => kb2.store(y, kb2.lid, K.f(1)));
    expect(() => renderCuda(kb2.kernel)).toThrow(/but it has a store statement/);
  });

  it("two kernels as one launch keep each kernel's prefetches for its own workgroups", () => {
    const merged = mergeKernels(rowCopy("a"), rowCopy("b"), "ab");
    const seen: [string, number][] = [];
    simulate(merged, { b0: new Float32Array(32), b1: new Float32Array(32), b0_m: new Float32Array(48), b1_m: new Float32Array(48) }, { [MERGE_SPLIT]: 2 }, 5, { prefetch: (buf, byte) => seen.push([buf, byte]) });
    expect(seen).toEqual([["b0", 0], ["b0", 64], ["b0_m", 0], ["b0_m", 64], ["b0_m", 128]]);
    expect(renderCuda(merged).split("griddepcontrol.wait").length).toBe(2);
  });
});

describe("kir split-arrival barriers (mbarriers) and register moves", () => {
  /**
   * Threads 128-255 write their values and arrive; threads 0-127 wait for that phase and read them.
   * `waits`: the parities the readers wait on in turn (a second wait on parity 1 waits for a phase
   * that no thread will complete).
   */
  const pipeline = (waits = [0]) => {
    const kb = new KernelBuilder("ws", 256, 32);
    const y = kb.buffer("b0", "f32", true);
    const sh = kb.shared("vals", "f32", 128);
    const bars = kb.mbarriers("bars", 2);
    kb.if(K.eq(kb.lid, K.i(0)), () => kb.mbarInit(bars, K.i(1), 128));
    kb.barrier();
    kb.if(
      K.ge(kb.lid, K.i(128)),
      () => {
        kb.setmaxnreg(false, 56);
        kb.store(sh, K.sub(kb.lid, K.i(128)), K.toF(kb.lid));
        kb.mbarArrive(bars, K.i(1));
      },
      () => {
        kb.setmaxnreg(true, 224);
        for (const p of waits) kb.mbarWait(bars, K.i(1), K.i(p));
        kb.store(y, kb.lid, kb.load(sh, K.sub(K.i(127), kb.lid)));
      },
    );
    return kb.kernel;
  };

  it("renders on CUDA as PTX mbarrier and setmaxnreg (each wait a loop of its own), 8-byte aligned barrier words", () => {
    const cuda = renderCuda(pipeline());
    expect(cuda).toContain("__shared__ __align__(16) unsigned bars_0[4];");
    expect(cuda).toContain(`asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\\n" :: "r"((unsigned)__cvta_generic_to_shared(&bars_0[2 * (1)])), "r"(128) : "memory");`);
    expect(cuda).toContain(`asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\\n" :: "r"((unsigned)__cvta_generic_to_shared(&bars_0[2 * (1)])) : "memory");`);
    expect(cuda).toContain(`for (unsigned bars_0_done0 = 0; !bars_0_done0;) asm volatile("{\\n.reg .pred p;\\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\\nselp.u32 %0, 1, 0, p;\\n}\\n" : "=r"(bars_0_done0) : "r"((unsigned)__cvta_generic_to_shared(&bars_0[2 * (1)])), "r"((unsigned)(0)) : "memory");`);
    expect(renderCuda(pipeline([0, 1]))).toContain("bars_0_done1");
    expect(cuda).toContain(`asm volatile("setmaxnreg.dec.sync.aligned.u32 56;\\n" ::: "memory");`);
    expect(cuda).toContain(`asm volatile("setmaxnreg.inc.sync.aligned.u32 224;\\n" ::: "memory");`);
  });

  it("runs in the simulator: the waiting threads read what the arriving ones wrote; a wait no arrival completes is a deadlock", () => {
    const y = new Float32Array(256);
    simulate(pipeline(), { b0: y }, {}, 1);
    expect([...y.slice(0, 128)]).toEqual(Array.from({ length: 128 }, (_, t) => 255 - t));
    expect(() => simulate(pipeline([0, 1]), { b0: new Float32Array(256) }, {}, 1)).toThrow(/wait on mbarriers that no warp will complete \(a deadlock\)/);
  });

  it("is refused where it cannot run (WGSL); bad counts by name", () => {
    expect(() => renderWgsl(pipeline())).toThrow(/WGSL has no split-arrival barriers or register moves/);
    const kb = new KernelBuilder("bad", 128, 32);
    const bars = kb.mbarriers("bars", 1);
    expect(() => kb.mbarInit(bars, K.i(0), 0)).toThrow(/positive count of arrivals, not 0/);
    expect(() => kb.setmaxnreg(true, 230)).toThrow(/setmaxnreg takes a multiple of 8 from 24 to 256, not 230/);
  });
});

describe("warp max and first lane (the warp router's top-k round)", () => {
  /** Each lane's value (lane-dependent, negative ones and a tie included), the warp's max, and the first lanes where a value equals it and where it exceeds a bound nowhere. */
  const kernel = () => {
    const kb = new KernelBuilder("wm", 64, 32);
    const out = kb.buffer("out", "f32", true);
    const lane = kb.let("lane", K.mod(kb.lid, K.i(32)));
    const warp = kb.let("warp", K.div(kb.lid, K.i(32)));
    // Warp 0: -lane (the max 0 at lane 0); warp 1: (lane % 7) - 3 (the max 3 at lanes 6, 13, 20, 27).
    const v = kb.let("v", K.sel(K.eq(warp, K.i(0)), K.sub(K.f(0), K.toF(lane)), K.sub(K.toF(K.mod(lane, K.i(7))), K.f(3))));
    const top = kb.let("top", K.warpMax(v));
    const first = kb.let("first", K.firstLane(K.eq(v, top)));
    const none = kb.let("none", K.firstLane(K.gt(v, K.f(100))));
    kb.store(out, K.mul(kb.lid, K.i(3)), top);
    kb.store(out, K.add(K.mul(kb.lid, K.i(3)), K.i(1)), K.toF(first));
    kb.store(out, K.add(K.mul(kb.lid, K.i(3)), K.i(2)), K.toF(none));
    return kb.kernel;
  };

  it("every lane gets the warp's largest value and the lowest lane holding it; -1 where no lane holds", () => {
    const out = new Float32Array(64 * 3);
    simulate(kernel(), { out }, {}, 1);
    for (let t = 0; t < 64; t++) expect([...out.slice(3 * t, 3 * t + 3)]).toEqual(t < 32 ? [0, 0, -1] : [3, 6, -1]);
  });

  it("renders on CUDA as the runtime's redux.sync max and a ballot; WGSL refuses it; a select's branch may not hold it", () => {
    const cuda = renderCuda(kernel());
    expect(cuda).toContain("lingc::warp_max(");
    expect(cuda).toContain("(__ffs(__ballot_sync(0xffffffffu, ");
    expect(() => renderWgsl(kernel())).toThrow(/no subgroup shuffles/);
    expect(() => K.sel(K.lt(K.i(0), K.i(1)), K.warpMax(K.f(1)), K.f(0))).toThrow("runs in some lanes only");
    expect(() => K.warpMax(K.i(1))).toThrow("kir: warpMax of i32");
  });
});
