/**
 * kir: a small kernel language for the GPU backends. A kernel is a 1-D grid of workgroups with a
 * body of typed statements (lets, mutable vars, loops, ifs, loads and stores, workgroup barriers and
 * shared arrays). Kernels are written once with the builder below and rendered to WGSL (and CUDA):
 * the renderers are mostly tables from node kind to target text, as tinygrad's are.
 *
 * Tile programs add what tensor-core kernels are made of: 16-byte copies from a buffer into a
 * shared array that complete asynchronously (a multi-stage pipeline commits them in groups and
 * waits for all but the newest), and warp-wide matrix multiply-accumulates on register fragments
 * whose per-lane layout the shape names (MmaShape). A renderer without tensor cores refuses an mma.
 *
 * The node types and expression constructors are in kir-expr.ts (re-exported here); this file is
 * the builder, which emits statements and the reductions and scans made of them.
 */

export * from "./kir-expr";
import { add, div, eq, ge, i, lt, max, mod, mul, sel, sub, type BufferElem, type Expr, type KType, type Kernel, type MmaShape, type Stmt, type WgmmaShape } from "./kir-expr";

/**
 * Why a kernel's preWait statements could change a result if run before the previous kernels end
 * (undefined: they cannot): only prefetches under ifs, whose expressions read no buffer or
 * workgroup array.
 */
export function preWaitProblem(ss: readonly Stmt[]): string | undefined {
  const reads = (node: unknown): boolean => {
    if (Array.isArray(node)) return node.some(reads);
    if (!node || typeof node !== "object") return false;
    const n = node as Record<string, unknown>;
    return n["k"] === "load" || n["k"] === "word" || Object.values(n).some(reads);
  };
  for (const s of ss) {
    if (s.k === "if") {
      const inner = reads(s.c) ? `an if reads memory` : (preWaitProblem(s.then) ?? (s.else ? preWaitProblem(s.else) : undefined));
      if (inner) return inner;
    } else if (s.k !== "prefetchL2") return `a ${s.k} statement`;
    else if (reads(s.byte) || reads(s.bytes)) return `a prefetch's range reads memory`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Builder

/** Powers of two from `lo` up to below `hi` (xor masks of a butterfly). */
const lanesFrom = (lo: number, hi: number): number[] => {
  const out: number[] = [];
  for (let m = lo; m < hi; m *= 2) out.push(m);
  return out;
};

export class KernelBuilder {
  readonly kernel: Kernel;
  private blocks: Stmt[][];
  private counter = 0;

  /**
   * warpSize: lanes that shuffle registers in lockstep (CUDA: 32); workgroup reductions then sum
   * each warp by shuffles and the warps' partial results through workgroup memory (two barriers)
   * instead of a tree through workgroup memory (log2(wg) + 2 barriers).
   */
  constructor(
    name: string,
    wg: number,
    private readonly warpSize?: number,
  ) {
    this.kernel = { name, wg, buffers: [], uniforms: [], shared: [], body: [] };
    this.blocks = [this.kernel.body];
  }

  get lid(): Expr {
    return { k: "builtin", t: "i32", name: "lid" };
  }

  /** The workgroup's index in the (linearized) grid. */
  get wg(): Expr {
    return { k: "builtin", t: "i32", name: "wg" };
  }

  /** The global thread index: wg * workgroup size + lid. */
  get gid(): Expr {
    return add(mul(this.wg, i(this.kernel.wg)), this.lid);
  }

  buffer(name: string, elem: BufferElem, write = false): string {
    if (!this.kernel.buffers.some((b) => b.name === name)) this.kernel.buffers.push({ name, elem, write });
    return name;
  }

  uniform(name: string): Expr {
    if (!this.kernel.uniforms.includes(name)) this.kernel.uniforms.push(name);
    return { k: "uni", t: "i32", name };
  }

  shared(name: string, t: KType, size: number, align?: number): string {
    this.kernel.shared.push({ name, t, size, ...(align ? { align } : {}) });
    return name;
  }

  load(buf: string, idx: Expr, t?: KType): Expr {
    const b = this.kernel.buffers.find((x) => x.name === buf);
    const s = this.kernel.shared.find((x) => x.name === buf);
    const elem = t ?? (b ? (b.elem === "bf16" || b.elem === "f8e4m3" ? "f32" : b.elem) : s?.t);
    if (!elem) throw new Error(`kir: load from unknown buffer ${buf}`);
    return { k: "load", t: elem, buf, idx };
  }

  /** Word `idx` of bf16 buffer `buf`: elements 2 idx and 2 idx + 1, one load (take them with K.half). */
  loadWord(buf: string, idx: Expr): Expr {
    const b = this.kernel.buffers.find((x) => x.name === buf);
    if (b?.elem !== "bf16") throw new Error(`kir: loadWord reads bf16 buffers, not ${buf}`);
    return { k: "word", t: "u32", buf, idx };
  }

  /**
   * An element of a workgroup array that every thread reads alike, read after a barrier that follows
   * its last write (the caller's): a value that control flow around barriers may depend on. WGSL's
   * uniformity rules need it said (workgroupUniformLoad, which adds its own barrier); elsewhere a
   * plain load.
   */
  uniformLoad(buf: string, idx: Expr): Expr {
    const s = this.kernel.shared.find((x) => x.name === buf);
    if (!s) throw new Error(`kir: uniformLoad reads workgroup arrays, not ${buf}`);
    return { k: "load", t: s.t, buf, idx, uniform: true };
  }

  private emit(s: Stmt): void {
    this.blocks[this.blocks.length - 1]!.push(s);
  }

  fresh(base: string): string {
    return `${base}_${this.counter++}`;
  }

  let(base: string, e: Expr): Expr {
    const name = this.fresh(base);
    this.emit({ k: "let", name, e });
    return { k: "ref", t: e.t, name };
  }

  var(base: string, e: Expr): { ref: Expr; set: (e: Expr) => void } {
    const name = this.fresh(base);
    this.emit({ k: "var", name, t: e.t, e });
    return { ref: { k: "ref", t: e.t, name }, set: (x: Expr) => this.emit({ k: "set", name, e: x }) };
  }

  array(base: string, t: KType, size: number): string {
    const name = this.fresh(base);
    this.emit({ k: "array", name, t, size });
    return name;
  }

  store(buf: string, idx: Expr, e: Expr): void {
    this.emit({ k: "store", buf, idx, e });
  }

  private block(body: () => void): Stmt[] {
    const b: Stmt[] = [];
    this.blocks.push(b);
    try {
      body();
    } finally {
      this.blocks.pop();
    }
    return b;
  }

  if(c: Expr, then: () => void, otherwise?: () => void): void {
    this.emit({ k: "if", c, then: this.block(then), else: otherwise ? this.block(otherwise) : undefined });
  }

  for(base: string, from: Expr, to: Expr, body: (v: Expr) => void, step: Expr = i(1)): void {
    const v = this.fresh(base);
    const ref: Expr = { k: "ref", t: "i32", name: v };
    this.emit({ k: "for", v, from, to, step, body: this.block(() => body(ref)) });
  }

  /** A loop the renderer must not unroll (a pipeline's main loop: its body is large). */
  loop(base: string, from: Expr, to: Expr, body: (v: Expr) => void): void {
    const v = this.fresh(base);
    const ref: Expr = { k: "ref", t: "i32", name: v };
    this.emit({ k: "for", v, from, to, step: i(1), body: this.block(() => body(ref)), unroll: false });
  }

  copy16(dst: string, dstIdx: Expr, src: string, srcIdx: Expr, valid: Expr): void {
    this.emit({ k: "copy16", dst, dstIdx, src, srcIdx, valid });
  }

  copyCommit(): void {
    this.emit({ k: "copyCommit" });
  }

  copyWait(pending: number): void {
    this.emit({ k: "copyWait", pending });
  }

  /**
   * Four fragment words by ldmatrix (see the ldsm statement); idx: this lane's row's first word.
   * trans: each matrix transposed (ldmatrix .trans): lane l receives column l / 4, rows 2 (l % 4)
   * and + 1 (16-bit elements), the B fragment of a [k][n] tile.
   */
  ldsm(base: string, src: string, idx: Expr, trans = false): Expr[] {
    const names = [0, 1, 2, 3].map(() => this.fresh(base));
    this.emit({ k: "ldsm", names, src, idx, ...(trans ? { trans } : {}) });
    return names.map((name) => ({ k: "ref", t: "u32", name }) as Expr);
  }

  /**
   * Four words of a bf16, f32 or f8e4m3 buffer `buf` from word `idx` (a multiple of 4; see the
   * load16 statement): take the values with K.half (bf16: two a word), K.bitsF32 (f32) or
   * K.e4m3Byte (e4m3: four a word).
   */
  load16(base: string, buf: string, idx: Expr): Expr[] {
    const b = this.kernel.buffers.find((x) => x.name === buf);
    if (b?.elem !== "bf16" && b?.elem !== "f32" && b?.elem !== "f8e4m3") throw new Error(`kir: load16 reads bf16, f32 or f8e4m3 buffers, not ${buf}`);
    const names = [0, 1, 2, 3].map(() => this.fresh(base));
    this.emit({ k: "load16", names, buf, idx });
    return names.map((name) => ({ k: "ref", t: "u32", name }) as Expr);
  }

  /**
   * Four u32 words (bf16 pairs, K.pack; or e4m3 quadruples, K.packE4m3) as words idx .. idx + 3 of
   * bf16 (or f8e4m3) buffer `buf`, one 16-byte store where the target has them.
   */
  store16(buf: string, idx: Expr, words: Expr[]): void {
    const b = this.kernel.buffers.find((x) => x.name === buf);
    if (b?.elem !== "bf16" && b?.elem !== "f8e4m3") throw new Error(`kir: store16 writes bf16 or f8e4m3 buffers, not ${buf}`);
    if (words.length !== 4 || words.some((w) => w.t !== "u32")) throw new Error("kir: store16 takes 4 u32 words");
    this.emit({ k: "store16", buf, idx, words });
  }

  mma(shape: MmaShape, acc: string, at: Expr, a: Expr[], b: Expr[]): void {
    if (a.length !== 4 || b.length !== 2 || [...a, ...b].some((x) => x.t !== "u32")) throw new Error(`kir: ${shape} takes 4 A and 2 B words (u32)`);
    this.emit({ k: "mma", shape, acc, at, a, b });
  }

  wgmma(shape: WgmmaShape, acc: string, src: string, a: Expr | Expr[], b: Expr, opts: { zero?: boolean; bMn?: number } = {}): void {
    if (shape.n % 8 !== 0 || shape.n < 8 || shape.n > 256) throw new Error(`kir: wgmma n must be a multiple of 8 up to 256, not ${shape.n}`);
    if (Array.isArray(a) && (shape.ab !== "bf16" || a.length !== 4 || a.some((x) => x.t !== "u32"))) throw new Error("kir: a wgmma A from registers is four u32 words of bf16 pairs");
    if (opts.bMn !== undefined && (shape.ab !== "bf16" || opts.bMn % 256 !== 0 || opts.bMn <= 0 || (shape.n > 64 && shape.n % 64 !== 0)))
      throw new Error(`kir: an MN-major wgmma B is bf16, its chunks a positive multiple of 1024 bytes apart and n a multiple of 64 past 64 (bMn ${opts.bMn}, n ${shape.n})`);
    this.emit({ k: "wgmma", shape, acc, src, a, b, ...(opts.zero ? { zero: true as const } : {}), ...(opts.bMn !== undefined ? { bMn: opts.bMn } : {}) });
  }

  wgmmaFence(): void {
    this.emit({ k: "wgmmaFence" });
  }

  wgmmaCommit(): void {
    this.emit({ k: "wgmmaCommit" });
  }

  wgmmaWait(pending: number): void {
    this.emit({ k: "wgmmaWait", pending });
  }

  fenceAsyncShared(): void {
    this.emit({ k: "fenceAsyncShared" });
  }

  /** A device-wide memory fence (see the fence statement): this thread's global writes before, visible to the grid before those after. */
  fence(): void {
    this.emit({ k: "fence" });
  }

  /** A workgroup array of `n` mbarriers (see the mbar statements): two u32 words each, 8-byte aligned. */
  mbarriers(base: string, n: number): string {
    return this.shared(this.fresh(base), "u32", 2 * n, 8);
  }

  mbarInit(bar: string, idx: Expr, count: number): void {
    if (!Number.isInteger(count) || count < 1) throw new Error(`kir: an mbarrier expects a positive count of arrivals, not ${count}`);
    this.emit({ k: "mbarInit", bar, idx, count });
  }

  mbarArrive(bar: string, idx: Expr): void {
    this.emit({ k: "mbarArrive", bar, idx });
  }

  mbarWait(bar: string, idx: Expr, parity: Expr): void {
    this.emit({ k: "mbarWait", bar, idx, parity });
  }

  setmaxnreg(inc: boolean, regs: number): void {
    if (regs % 8 !== 0 || regs < 24 || regs > 256) throw new Error(`kir: setmaxnreg takes a multiple of 8 from 24 to 256, not ${regs}`);
    this.emit({ k: "setmaxnreg", inc, regs });
  }

  /** Atomically adds `e` (i32) to `buf[idx]` (an i32 buffer) and gives the value it had. */
  atomicAdd(base: string, buf: string, idx: Expr, e: Expr): Expr {
    const b = this.kernel.buffers.find((x) => x.name === buf);
    if (b?.elem !== "i32" || !b.write) throw new Error(`kir: atomicAdd on ${buf}, which is not a written i32 buffer`);
    if (e.t !== "i32") throw new Error(`kir: atomicAdd of ${e.t}`);
    const name = this.fresh(base);
    this.emit({ k: "atomicAdd", name, buf, idx, e });
    return { k: "ref", t: "i32", name };
  }

  barrier(): void {
    this.emit({ k: "barrier" });
  }

  /** See the prefetchL2 statement (a byte range of `buf`). */
  prefetchL2(buf: string, byte: Expr, bytes: Expr): void {
    if (!this.kernel.buffers.some((b) => b.name === buf)) throw new Error(`kir: prefetch of unknown buffer ${buf}`);
    this.emit({ k: "prefetchL2", buf, byte, bytes });
  }

  /**
   * Statements for Kernel.preWait (before the wait for the previous kernels): prefetches and ifs.
   * Their expressions are written inline (no lets: the body's scope does not see them).
   */
  beforeWait(body: () => void): void {
    (this.kernel.preWait ??= []).push(...this.block(body));
  }

  warpBarrier(): void {
    this.emit({ k: "warpBarrier" });
  }

  /** A workgroup-wide sum of one f32 per thread (all threads must reach it); returns the total in every thread. */
  workgroupSum(x: Expr): Expr {
    return this.workgroupReduce(x, add, "sum");
  }

  /** A workgroup-wide maximum of one f32 per thread (all threads must reach it), in every thread. */
  workgroupMax(x: Expr): Expr {
    return this.workgroupReduce(x, max, "most");
  }

  /**
   * A workgroup-wide inclusive prefix sum of one i32 per thread (Hillis-Steele through workgroup
   * memory; all threads must reach it): this thread's running total and the workgroup's total.
   */
  workgroupScan(x: Expr): { inclusive: Expr; total: Expr } {
    const sh = this.shared(this.fresh("scan"), "i32", this.kernel.wg);
    this.store(sh, this.lid, x);
    this.barrier();
    for (let s = 1; s < this.kernel.wg; s *= 2) {
      const v = this.let("prev", sel(ge(this.lid, i(s)), this.load(sh, sub(this.lid, i(s))), i(0)));
      this.barrier();
      this.store(sh, this.lid, add(this.load(sh, this.lid), v));
      this.barrier();
    }
    const inclusive = this.let("incl", this.load(sh, this.lid));
    const total = this.let("total", this.load(sh, i(this.kernel.wg - 1)));
    this.barrier();
    return { inclusive, total };
  }

  /**
   * A warp-wide exclusive prefix sum of one i32 per lane (all 32 lanes must reach it; `lane` is the
   * lane's index): butterfly shuffles, at step m a lane adds its partner group's total to its prefix
   * when the partner group comes first (lane bit m set). No workgroup memory, no barriers.
   */
  warpScan(x: Expr, lane: Expr): { exclusive: Expr; total: Expr } {
    const total = this.var("wtotal", x);
    const pre = this.var("wpre", i(0));
    for (let m = 1; m < 32; m *= 2) {
      const other = this.let("wp", { k: "shfl", t: "i32", a: total.ref, mask: m });
      pre.set(sel(eq(mod(div(lane, i(m)), i(2)), i(1)), add(pre.ref, other), pre.ref));
      total.set(add(total.ref, other));
    }
    return { exclusive: this.let("wexcl", pre.ref), total: this.let("wsum", total.ref) };
  }

  /**
   * The sum of one f32 over a warp's 32 lanes, in every lane (butterfly shuffles; a warp-synchronous
   * target); with `width` (a power of two), over each aligned group of that many lanes.
   */
  warpSum(x: Expr, width = 32): Expr {
    return this.warpReduce(x, add, width);
  }

  /**
   * The maximum of one f32 over a warp's 32 lanes (or each aligned group of `width`), in every lane,
   * by butterfly shuffles (K.warpMax is the whole warp's as one expression: CUDA's redux.sync).
   */
  warpMax(x: Expr, width = 32): Expr {
    return this.warpReduce(x, max, width);
  }

  /**
   * The sum over the lanes that hold this lane's place in the other groups of `width` lanes (lanes
   * l % width, + width, + 2 width, ...: the groups' partial results added), in every lane.
   */
  warpSumAcross(x: Expr, width: number): Expr {
    return this.butterfly(x, add, lanesFrom(width, 32));
  }

  /** The maximum over the same lanes as warpSumAcross. */
  warpMaxAcross(x: Expr, width: number): Expr {
    return this.butterfly(x, max, lanesFrom(width, 32));
  }

  private warpReduce(x: Expr, combine: (a: Expr, b: Expr) => Expr, width = 32): Expr {
    return this.butterfly(x, combine, lanesFrom(1, width).reverse());
  }

  /** Butterfly shuffles at these lane distances (xor masks), each combining with the partner's value. */
  private butterfly(x: Expr, combine: (a: Expr, b: Expr) => Expr, masks: number[]): Expr {
    let v = x;
    for (const m of masks) v = this.let("wr", combine(v, { k: "shfl", t: v.t, a: v, mask: m }));
    return v;
  }

  /**
   * A tree reduction through workgroup memory (a power-of-two workgroup); with warp shuffles, each
   * warp's result by shuffles, then every thread combines the warps' results (in warp order, the
   * same order in every thread, so every thread gets the same total).
   */
  private workgroupReduce(x: Expr, combine: (a: Expr, b: Expr) => Expr, name: string): Expr {
    const W = this.warpSize;
    if (W && this.kernel.wg % W === 0) {
      const warps = this.kernel.wg / W;
      const own = this.warpReduce(x, combine, W);
      if (warps === 1) {
        // Callers may rely on the barrier a reduction ends with (their workgroup memory is reused after it).
        const total = this.let(name, own);
        this.barrier();
        return total;
      }
      const sh = this.shared(this.fresh("red"), "f32", warps);
      this.if(eq(mod(this.lid, i(W)), i(0)), () => this.store(sh, div(this.lid, i(W)), own));
      this.barrier();
      let acc = this.load(sh, i(0));
      for (let w = 1; w < warps; w++) acc = combine(acc, this.load(sh, i(w)));
      const total = this.let(name, acc);
      this.barrier();
      return total;
    }
    const sh = this.shared(this.fresh("red"), "f32", this.kernel.wg);
    this.store(sh, this.lid, x);
    this.barrier();
    for (let s = this.kernel.wg / 2; s >= 1; s /= 2) {
      this.if(lt(this.lid, i(s)), () => this.store(sh, this.lid, combine(this.load(sh, this.lid), this.load(sh, add(this.lid, i(s))))));
      this.barrier();
    }
    const total = this.let(name, this.load(sh, i(0)));
    this.barrier();
    return total;
  }
}
