/**
 * kir's data and expression constructors (backends/kernels/kir.ts re-exports all of it beside the
 * KernelBuilder): the node types of expressions and statements, a kernel's parameters, expression
 * constructors with their checks (types; no warp shuffle where CUDA would run it in some lanes
 * only), and index arithmetic that folds constants.
 */
export type KType = "f32" | "i32" | "u32" | "bool";
export type BinOp = "+" | "-" | "*" | "/" | "%" | "<" | "<=" | ">" | ">=" | "==" | "!=" | "&&" | "||" | "min" | "max" | "^";
export type UnOp = "neg" | "exp" | "exp2" | "log" | "sqrt" | "rsqrt" | "sin" | "cos" | "abs" | "not";
export type NarrowFloat = "bf16" | "f16" | "f8e4m3fn" | "f8e5m2";
/**
 * Warp-wide matrix multiply-accumulates (PTX mma.sync shapes). "m16n8k32.e4m3": D[16x8] += A[16x32]
 * B[32x8], e4m3 inputs, f32 accumulators. Per lane (g = lane / 4, t = lane % 4), A is four words of
 * four codes (rows g, g + 8, g, g + 8; k = 4t..4t+3, the same, then + 16), B two words (column g;
 * k = 4t..4t+3 and + 16), the accumulator four floats (row g columns 2t, 2t + 1, then row g + 8).
 * "m16n8k16.bf16": D[16x8] += A[16x16] B[16x8] of bf16 pairs, the same words in the same places
 * (a word holds k = 2t, 2t + 1 instead of 4t..4t+3; the second half starts at k = 8).
 */
export type MmaShape = "m16n8k32.e4m3" | "m16n8k16.bf16";
/**
 * Hopper warpgroup MMAs (PTX wgmma.mma_async): D[64 x n] += A[64 x k] B[k x n] of bf16 (k 16) or
 * e4m3 (k 32: the same 32 bytes of a row), f32 accumulators, both operands read from shared memory
 * through matrix descriptors, K-major in the
 * 128-byte swizzle (rows of 64 elements, 16-byte chunk c of row r stored at chunk c ^ (r % 8), each
 * 8-row group 1024 bytes after the previous, the tile 1024-byte aligned). Per thread of the
 * warpgroup (warp w, g = lane / 4, t = lane % 4) the accumulators are n / 2 floats: for each 8-column
 * block j, row 16w + g columns 8j + 2t, 8j + 2t + 1, then row 16w + g + 8 (as mma m16n8's).
 */
export type WgmmaShape = { m: 64; n: number; k: 16; ab: "bf16" } | { m: 64; n: number; k: 32; ab: "e4m3" };
/** Target helpers a kernel may call by name (each renderer defines the ones it supports). */
export type Helper = "pow2_ceil";

export type Expr =
  | { k: "lit"; t: KType; v: number }
  | { k: "ref"; t: KType; name: string }
  | { k: "uni"; t: "i32"; name: string }
  /** `uniform`: a workgroup array's element every thread reads alike (see KernelBuilder.uniformLoad). */
  | { k: "load"; t: KType; buf: string; idx: Expr; uniform?: true }
  | { k: "bin"; t: KType; op: BinOp; a: Expr; b: Expr }
  | { k: "un"; t: KType; op: UnOp; a: Expr }
  | { k: "sel"; t: KType; c: Expr; a: Expr; b: Expr }
  | { k: "conv"; t: KType; a: Expr }
  /** lid: the thread's index in its workgroup; wg: the workgroup's in the grid; nwg: the workgroups launched (a grid-synced kernel's, which the target sizes to fit at once). */
  | { k: "builtin"; t: "i32"; name: "lid" | "wg" | "nwg" }
  | { k: "round"; t: "f32"; to: NarrowFloat; a: Expr }
  | { k: "call"; t: "f32"; fn: Helper; a: Expr }
  /** The value of `a` in the lane whose index is this lane's xor `mask`, within a warp of 32 (CUDA). */
  | { k: "shfl"; t: KType; a: Expr; mask: number }
  /** The value of `a` in lane `lane` of this warp (a lane index, 0-31, any per lane; CUDA). */
  | { k: "shflIdx"; t: KType; a: Expr; lane: Expr }
  /** The largest `a` (f32, not NaN) of the warp's 32 lanes, in every lane (CUDA: one redux.sync on order-preserving bits). */
  | { k: "warpMax"; t: "f32"; a: Expr }
  /** The lowest lane of the warp where bool `a` holds, in every lane; -1 where it holds in none (CUDA: ballot, then ffs). */
  | { k: "firstLane"; t: "i32"; a: Expr }
  /** The 32-bit word `idx` of a bf16 buffer (two values: element 2 idx in the low half), undecoded. */
  | { k: "word"; t: "u32"; buf: string; idx: Expr }
  /** The bf16 value in the low (`hi` false) or high half of a word, as f32 (exact). */
  | { k: "half"; t: "f32"; a: Expr; hi: boolean }
  /** The f32 value whose bits are the word `a` (a load16 word of an f32 buffer). */
  | { k: "bitsF32"; t: "f32"; a: Expr }
  /** The e4m3 code in byte `byte` (0 lowest) of the word `a` (a load16 word of an f8e4m3 buffer), as f32 (exact). */
  | { k: "e4m3Byte"; t: "f32"; a: Expr; byte: number }
  /** Two f32 values rounded to bf16 (to nearest even) in one word, `lo` in the low half: an mma fragment (CUDA). */
  | { k: "pack"; t: "u32"; lo: Expr; hi: Expr }
  /** Four f32 values as e4m3 codes (rounded to nearest even, saturating at 448) in one word, `a[0]` in the lowest byte (CUDA). */
  | { k: "packE4m3"; t: "u32"; a: Expr[] }
  /**
   * a / b (f32, rounded once, as `/` is), given r = 1 / b (rounded once): where a target divides
   * slowly and has fused multiply-adds (CUDA), it takes a * r corrected by one FMA residual
   * (Markstein), the same value in two FMAs and a multiply; elsewhere a division. For b positive,
   * finite and normal (a quantize's scale: one reciprocal a group instead of a division a value).
   */
  | { k: "quot"; t: "f32"; a: Expr; b: Expr; r: Expr };

export type Stmt =
  | { k: "let"; name: string; e: Expr }
  | { k: "var"; name: string; t: KType; e: Expr }
  | { k: "set"; name: string; e: Expr }
  | { k: "store"; buf: string; idx: Expr; e: Expr }
  | { k: "if"; c: Expr; then: Stmt[]; else?: Stmt[] }
  | { k: "for"; v: string; from: Expr; to: Expr; step: Expr; body: Stmt[]; unroll?: boolean }
  /** A workgroup barrier; with `threads`, among the workgroup's first `threads` threads only (whole warps; CUDA: named barrier 1), which the rest never reach. */
  | { k: "barrier"; threads?: number }
  /** Orders this warp's shared-memory accesses (its lanes only; CUDA __syncwarp): a warp that works alone on its part of workgroup memory. */
  | { k: "warpBarrier" }
  | { k: "array"; name: string; t: KType; size: number }
  /** 16 bytes of buffer `src` from element `srcIdx` into shared u32 array `dst` at word `dstIdx` (zeros when !valid), asynchronously. */
  | { k: "copy16"; dst: string; dstIdx: Expr; src: string; srcIdx: Expr; valid: Expr }
  /** Closes the group of copies issued since the last commit. */
  | { k: "copyCommit" }
  /** Waits until at most `pending` committed groups are still in flight (this thread's copies). */
  | { k: "copyWait"; pending: number }
  /**
   * Four 8x8 matrices of 16-bit pairs from shared u32 array `src` into the u32 lets `names` (PTX
   * ldmatrix .x4): lane l gives the word index of row l % 8 of matrix l / 8; lane l receives, of
   * each matrix, row l / 4, word l % 4. For 8-bit codes that is the mma fragment layout of a 16x32
   * A tile or two 8x32 B tiles (row-major rows of 16 bytes).
   */
  | { k: "ldsm"; names: string[]; src: string; idx: Expr; trans?: boolean }
  /**
   * Words idx .. idx + 3 of bf16 buffer `buf` (eight values, 16 bytes; idx a multiple of 4) into the
   * u32 lets `names`: one vector load where the target has them (CUDA), so that a lane keeps 16
   * bytes in flight per load (a GEMV's weight rows).
   */
  | { k: "load16"; names: string[]; buf: string; idx: Expr }
  /** Words idx .. idx + 3 (16-byte aligned) of bf16 buffer `buf` (elements 2 idx .. 2 idx + 7), one store (CUDA). */
  | { k: "store16"; buf: string; idx: Expr; words: Expr[] }
  /** acc[at .. at+3] += A . B on the warp's fragments (a: 4 u32 words, b: 2; see MmaShape). */
  | { k: "mma"; shape: MmaShape; acc: string; at: Expr; a: Expr[]; b: Expr[] }
  /**
   * acc[0 .. n/2 - 1] += A . B for the warpgroup (see WgmmaShape), asynchronously: A's 64 rows start
   * at word `a` of shared u32 array `src`, B's n rows at word `b`; each the address of its k16 slice
   * (a 32-byte step inside the swizzled rows). Completes by wgmmaCommit and wgmmaWait. `zero`: the
   * accumulators' values before are not read (D = A B: a product's first MMA, with no registers
   * zeroed before it, which ptxas would have to fence). `bMn` (bf16 only): B is MN-major instead,
   * stored as the k rows (128 bytes: 64 of the n columns each, swizzled as above) of each 64-column
   * chunk, the chunks bMn words apart (a 1024-byte multiple); `b` is then the word of the slice's
   * first row (k rows k0 .. k0 + 15), so a row-major [keys x dims] tile is B of P V as it lies.
   * `a` as four u32 words (bf16 only): A from registers, each warp its 16 rows as mma m16n8k16's A
   * fragment (bf16 pairs: row g k 2t, 2t + 1; row g + 8; row g k 8 + 2t; row g + 8 k 8 + 2t), which
   * is a k16 slice of an accumulator's two 8-column blocks rounded to bf16 pairs (P of P V).
   */
  | { k: "wgmma"; shape: WgmmaShape; acc: string; src: string; a: Expr | Expr[]; b: Expr; zero?: true; bMn?: number }
  /** Orders register and shared-memory accesses before the warpgroup MMAs that follow (wgmma.fence). */
  | { k: "wgmmaFence" }
  /** Closes the group of warpgroup MMAs issued since the last commit. */
  | { k: "wgmmaCommit" }
  /** Waits until at most `pending` committed groups of warpgroup MMAs are in flight. */
  | { k: "wgmmaWait"; pending: number }
  /** Makes this thread's writes to shared memory (stores, completed async copies) visible to warpgroup MMAs. */
  | { k: "fenceAsyncShared" }
  /** Orders this thread's global-memory writes before its later ones for every thread of the grid (CUDA __threadfence). */
  | { k: "fence" }
  /**
   * Workgroup-memory barriers that threads arrive at and wait on apart (PTX mbarrier, CUDA), for a
   * warp-specialized pipeline: barrier `idx` of u32 array `bar` (two words each, 8-byte aligned).
   * init: one thread sets it to expect `count` arrivals a phase (then a workgroup barrier, before any
   * use); arrive: this thread's arrival (its earlier writes released to the waiters); wait: until the
   * phase of parity `parity` (0 or 1, phases alternate) has completed (acquires what was released).
   */
  | { k: "mbarInit"; bar: string; idx: Expr; count: number }
  | { k: "mbarArrive"; bar: string; idx: Expr }
  | { k: "mbarWait"; bar: string; idx: Expr; parity: Expr }
  /**
   * Moves this warpgroup's register budget to `regs` a thread (PTX setmaxnreg, Hopper: a producer
   * warpgroup gives registers up, `inc` false, so that the MMA warpgroups can take them); every
   * thread of the warpgroup reaches it alike.
   */
  | { k: "setmaxnreg"; inc: boolean; regs: number }
  /**
   * Every workgroup of the launch waits here until all have arrived, and then sees what each wrote
   * before it (a grid-wide barrier: CUDA, on i32 word 0 of buffer `buf`, whose top bit each barrier
   * flips, its low bits zero between). Every thread of every workgroup reaches it alike, at
   * the body's top level; the target launches no more workgroups than fit on the device at once
   * (a workgroup that waits for one not yet running would wait forever). With `last`, the last
   * workgroup to arrive (all its threads) runs those statements before any goes on, and the others
   * then see its writes too: work of a few workgroups (a router, a norm of one row) between two
   * phases for the cost of one barrier. They must not depend on which workgroup runs them (the wg
   * builtin), and hold no grid barrier. (CUDA: word 1 of `buf` too, a generation the last advances.)
   */
  | { k: "gridSync"; buf: string; last?: Stmt[] }
  /** Adds `e` to element `idx` of i32 buffer `buf` atomically; the let `name` gets the element's value before (CUDA atomicAdd). */
  | { k: "atomicAdd"; name: string; buf: string; idx: Expr; e: Expr }
  /**
   * A hint: bring `bytes` bytes of buffer `buf` from byte `byte` into the L2 cache (CUDA: one bulk
   * prefetch; both a multiple of 16). Changes no value, so it may run before the kernel waits for the
   * kernels before it (Kernel.preWait); a target without it renders nothing.
   */
  | { k: "prefetchL2"; buf: string; byte: Expr; bytes: Expr };

/**
 * Element types of buffers: bf16 buffers hold bf16 bits and read and write as f32 values; f8e4m3
 * buffers hold e4m3 codes packed four to a 32-bit word (a weight stored one byte per value) and read
 * as f32 values (read-only).
 */
export type BufferElem = "f32" | "i32" | "bf16" | "f8e4m3";

export interface BufferParam {
  name: string;
  elem: BufferElem;
  write: boolean;
  /** A read-only buffer held as `count` bindings of `per` elements each (a weight over a binding-size limit). */
  parts?: { count: number; per: number };
}

export interface Kernel {
  name: string;
  /** Threads per workgroup. */
  wg: number;
  buffers: BufferParam[];
  /** Run-time sizes (i32), set by the host before each launch. */
  uniforms: string[];
  /** Workgroup-shared arrays; `align`: their first byte's alignment, if more than 16 (swizzled MMA tiles: 1024). */
  shared: { name: string; t: KType; size: number; align?: number }[];
  body: Stmt[];
  /**
   * A buffer of this kernel holds more elements than an i32 index reaches (an expert stack of
   * Ling-1T: 256 x 2048 x 8192): a target renders its integers 64-bit (CUDA), or refuses it.
   */
  wide?: boolean;
  /** Workgroups the target must be able to keep resident on one multiprocessor (CUDA launch bounds: caps registers a thread). */
  minBlocks?: number;
  /**
   * What a workgroup does before it waits for the kernels launched before it (CUDA: programmatic
   * dependent launch lets a kernel start while the one before it finishes): L2 prefetches of data no
   * kernel writes (a GEMV's weight rows), under ifs of workgroup and thread indices only, so that
   * the weights stream in while the previous kernel's tail runs. No loads, stores or barriers.
   */
  preWait?: Stmt[];
}

// ---------------------------------------------------------------------------------------------
// Expressions

/**
 * A finite f32 value as the shortest decimal text that reads back as the same f32, with an `f`
 * suffix ("0.5f", "-0.0f", "1e-06f"): the float literal WGSL and CUDA C++ share.
 */
export function f32Text(v: number): string {
  const x = Math.fround(v);
  if (x === 0) return Object.is(x, -0) ? "-0.0f" : "0.0f";
  for (let p = 1; p <= 17; p++) {
    const s = x.toPrecision(p);
    if (Math.fround(Number(s)) === x) return `${s.includes("e") || s.includes(".") ? s : `${s}.0`}f`;
  }
  return `${x}f`;
}

export const lit = (v: number, t: KType = "i32"): Expr => ({ k: "lit", t, v });
export const f = (v: number): Expr => lit(v, "f32");
export const i = (v: number): Expr => lit(v, "i32");

/** Whether an expression holds a warp shuffle (not through a let: a ref is a value already computed). */
function hasShuffle(e: Expr): boolean {
  if (e.k === "shfl" || e.k === "shflIdx" || e.k === "warpMax" || e.k === "firstLane") return true;
  return Object.values(e).some((x) => typeof x === "object" && x !== null && "k" in x && hasShuffle(x as Expr));
}

/**
 * A shuffle must run in every lane of its warp (CUDA __shfl_sync with the full mask), but CUDA
 * evaluates a select's branches and the right of && and || only in some lanes: such a shuffle is
 * refused here (bind it with a let first). The simulator evaluates every branch in every lane, so
 * it would not notice.
 */
function noLaneShuffle(what: string, ...es: Expr[]): void {
  if (es.some(hasShuffle)) throw new Error(`kir: a warp shuffle ${what} runs in some lanes only; bind it with a let first`);
}

function bin(op: BinOp, a: Expr, b: Expr): Expr {
  if (a.t !== b.t) throw new Error(`kir: '${op}' on ${a.t} and ${b.t}`);
  if (op === "&&" || op === "||") noLaneShuffle(`right of '${op}'`, b);
  const cmp = ["<", "<=", ">", ">=", "==", "!="].includes(op);
  return { k: "bin", t: cmp ? "bool" : a.t, op, a, b };
}

export const add = (a: Expr, b: Expr) => bin("+", a, b);
export const sub = (a: Expr, b: Expr) => bin("-", a, b);
export const mul = (a: Expr, b: Expr) => bin("*", a, b);
export const div = (a: Expr, b: Expr) => bin("/", a, b);
export const mod = (a: Expr, b: Expr) => bin("%", a, b);
export const lt = (a: Expr, b: Expr) => bin("<", a, b);
export const le = (a: Expr, b: Expr) => bin("<=", a, b);
export const gt = (a: Expr, b: Expr) => bin(">", a, b);
export const ge = (a: Expr, b: Expr) => bin(">=", a, b);
export const eq = (a: Expr, b: Expr) => bin("==", a, b);
export const ne = (a: Expr, b: Expr) => bin("!=", a, b);
export const and = (a: Expr, b: Expr) => bin("&&", a, b);
export const or = (a: Expr, b: Expr) => bin("||", a, b);
export const min = (a: Expr, b: Expr) => bin("min", a, b);
export const max = (a: Expr, b: Expr) => bin("max", a, b);
/** Bitwise exclusive or (integers). */
export const xor = (a: Expr, b: Expr) => bin("^", a, b);

const un = (op: UnOp) => (a: Expr): Expr => ({ k: "un", t: a.t, op, a });
export const neg = un("neg");
export const exp = un("exp");
/** 2^x: one hardware instruction on GPUs (CUDA ex2.approx), where exp is several; softmaxes fold log2(e) into their scale. */
export const exp2 = un("exp2");
export const log = un("log");
export const sqrt = un("sqrt");
export const rsqrt = un("rsqrt");
export const sin = un("sin");
export const cos = un("cos");
export const abs = un("abs");
export const not = un("not");

export const sel = (c: Expr, a: Expr, b: Expr): Expr => {
  if (a.t !== b.t) throw new Error(`kir: select on ${a.t} and ${b.t}`);
  noLaneShuffle("in a branch of a select", a, b);
  return { k: "sel", t: a.t, c, a, b };
};
/** `a` as lane `lane` of the warp holds it (every lane of the warp must evaluate it). */
export const shflIdx = (a: Expr, lane: Expr): Expr => ({ k: "shflIdx", t: a.t, a, lane });
/** The warp's largest f32 `a` (every lane of the warp must evaluate it). */
export const warpMax = (a: Expr): Expr => {
  if (a.t !== "f32") throw new Error(`kir: warpMax of ${a.t}`);
  return { k: "warpMax", t: "f32", a };
};
/** The warp's lowest lane where bool `a` holds, -1 where none (every lane of the warp must evaluate it). */
export const firstLane = (a: Expr): Expr => {
  if (a.t !== "bool") throw new Error(`kir: firstLane of ${a.t}`);
  return { k: "firstLane", t: "i32", a };
};
export const toF = (a: Expr): Expr => (a.t === "f32" ? a : { k: "conv", t: "f32", a });
export const toI = (a: Expr): Expr => (a.t === "i32" ? a : { k: "conv", t: "i32", a });
/** a rounded to the narrow float `to` (to nearest even; a value already rounded to it stays as it is). */
export const round = (to: NarrowFloat, a: Expr): Expr => (a.k === "round" && a.to === to ? a : { k: "round", t: "f32", to, a });
export const call = (fn: Helper, a: Expr): Expr => ({ k: "call", t: "f32", fn, a });
/** a / b given r = 1 / b (see the expression's kind). */
export const quot = (a: Expr, b: Expr, r: Expr): Expr => ({ k: "quot", t: "f32", a, b, r });
/** The bf16 value in the low (`hi` false) or high half of a word (KernelBuilder.loadWord), as f32. */
export const half = (a: Expr, hi: boolean): Expr => ({ k: "half", t: "f32", a, hi });
/** The f32 value of a word's bits (a load16 word of an f32 buffer). */
export const bitsF32 = (a: Expr): Expr => ({ k: "bitsF32", t: "f32", a });
/** The e4m3 code in byte `byte` of a word (a load16 word of an f8e4m3 buffer), as f32. */
export const e4m3Byte = (a: Expr, byte: number): Expr => ({ k: "e4m3Byte", t: "f32", a, byte });

/** A distinct node for the same expression (renders identically; lets a generator tag it by identity). */
export const wrap = (e: Expr): Expr => ({ ...e });
/**
 * Two f32 values rounded to bf16 in one word (see the pack node). The pack rounds to nearest even as a
 * rounding to bf16 does, so a value rounded to bf16 just before goes in unrounded (a conversion there
 * and back fewer on CUDA).
 */
export const pack = (lo: Expr, hi: Expr): Expr => {
  const bare = (x: Expr) => (x.k === "round" && x.to === "bf16" ? x.a : x);
  return { k: "pack", t: "u32", lo: bare(lo), hi: bare(hi) };
};
/**
 * Four f32 values as the e4m3 codes of one word (KernelBuilder.store16 of an f8e4m3 buffer). The
 * pack rounds as a rounding to e4m3 does, so a value rounded to e4m3 just before goes in unrounded
 * (on CUDA a conversion there and back fewer).
 */
export const packE4m3 = (a: readonly Expr[]): Expr => {
  if (a.length !== 4) throw new Error("kir: packE4m3 takes 4 values");
  return { k: "packE4m3", t: "u32", a: a.map((x) => (x.k === "round" && x.to === "f8e4m3fn" ? x.a : x)) };
};

/** Structural equality of two expressions. */
export function same(a: Expr, b: Expr): boolean {
  return a === b || JSON.stringify(a) === JSON.stringify(b);
}

/** Sums with constant folding of literal zeros and ones, to keep generated index math readable. */
export function addI(a: Expr, b: Expr): Expr {
  if (a.k === "lit" && a.v === 0) return b;
  if (b.k === "lit" && b.v === 0) return a;
  if (a.k === "lit" && b.k === "lit") return i(a.v + b.v);
  return add(a, b);
}

export function mulI(a: Expr, b: Expr): Expr {
  if ((a.k === "lit" && a.v === 0) || (b.k === "lit" && b.v === 0)) return i(0);
  if (a.k === "lit" && a.v === 1) return b;
  if (b.k === "lit" && b.v === 1) return a;
  if (a.k === "lit" && b.k === "lit") return i(a.v * b.v);
  return mul(a, b);
}

/**
 * x * C or x * C + u (0 <= u < C) for literals C and u: the index of element u of the run of C
 * elements that a thread computes (the pointwise generator's runs), as { x, C, u }.
 */
function runIndex(e: Expr): { x: Expr; C: number; u: number } | undefined {
  const scaled = (m: Expr) => (m.k === "bin" && m.op === "*" && m.b.k === "lit" && m.b.t === "i32" && m.b.v > 0 ? { x: m.a, C: m.b.v } : undefined);
  const whole = scaled(e);
  if (whole) return { ...whole, u: 0 };
  if (e.k !== "bin" || e.op !== "+" || e.b.k !== "lit" || e.b.t !== "i32") return undefined;
  const part = scaled(e.a);
  return part && e.b.v >= 0 && e.b.v < part.C ? { ...part, u: e.b.v } : undefined;
}

/**
 * Index quotients, folding literal ones; (x C + u) / L with C dividing L is x / (L / C) (indices are
 * never negative), so the elements of a thread's run share their row's index math.
 */
export function divI(a: Expr, b: Expr): Expr {
  if (b.k === "lit" && b.v === 1) return a;
  const run = b.k === "lit" ? runIndex(a) : undefined;
  if (run && b.k === "lit" && b.v % run.C === 0) return divI(run.x, i(b.v / run.C));
  return div(a, b);
}

/** Index remainders: (x C + u) % L with C dividing L is (x % (L / C)) C + u (divI says why). */
export function modI(a: Expr, b: Expr): Expr {
  if (b.k === "lit" && b.v === 1) return i(0);
  const run = b.k === "lit" ? runIndex(a) : undefined;
  if (run && b.k === "lit" && b.v % run.C === 0) return addI(mulI(modI(run.x, i(b.v / run.C)), i(run.C)), i(run.u));
  return mod(a, b);
}

