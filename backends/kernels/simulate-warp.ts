/**
 * The kir simulator's warp (simulate.ts runs workgroups of them): 32 lanes in lockstep with an active
 * mask (an `if` runs both sides under their masks, a loop runs while a lane is active), exact f32/i32
 * arithmetic (simulate-scalar.ts), workgroup memory shared with the workgroup's other warps, and a
 * generator that yields after each statement, at each barrier and while it waits on an mbarrier, so
 * that the workgroup can interleave its warps.
 */
import { decodeBits, encodeBits } from "../../ir/numerics";
import type { Expr, Kernel, KType, Stmt } from "./kir";
import { binary, f32, fit, i32, u32, unary } from "./simulate-scalar";

export type SimArray = Float32Array | Int32Array | Uint16Array | Uint8Array;

/** What a test may watch a simulated kernel do besides its values: the L2 prefetches (buffer, first byte, bytes), one call a lane. */
export interface SimObserver {
  prefetch?: (buf: string, byte: number, bytes: number) => void;
}

export const W = 32;
type Vec = number[];
type Mask = boolean[];

// One word seen both ways (not two fresh typed arrays a call: these run for every lane of every load).
const wordF32 = new Float32Array(1);
const wordU32 = new Uint32Array(wordF32.buffer);
const f32Bits = (x: number) => ((wordF32[0] = x), wordU32[0]!);
const bitsF32 = (b: number) => ((wordU32[0] = b >>> 0), wordF32[0]!);

/** One warp of a simulated workgroup: its lanes' locals and arrays, run statement by statement under a lane mask. */
export class WarpRun {
  /** The threads of the last barrier among part of the workgroup this warp reached. */
  narrow = 0;
  private readonly vars = new Map<string, Vec>();
  private readonly arrays = new Map<string, { t: KType; a: Float64Array[] }>();
  private readonly types = new Map<string, KType>();

  constructor(
    private readonly k: Kernel,
    private readonly warp: number,
    private readonly wg: number,
    private readonly workgroups: number,
    private readonly buffers: Record<string, SimArray>,
    private readonly elem: Map<string, string>,
    private readonly shared: Map<string, { t: KType; a: Float64Array }>,
    private readonly uniforms: Record<string, number>,
    private readonly observe: SimObserver,
  ) {}

  /**
   * A warp shuffle runs in every lane of the warp (CUDA __shfl_sync with the full mask: undefined if
   * some lanes do not reach it); code under a lane-dependent branch that shuffles is refused here,
   * which the lockstep evaluation would otherwise run as if every lane were there.
   */
  private wholeWarp(m: Mask): void {
    for (let l = 0; l < W; l++) {
      const live = this.warp * W + l < this.k.wg;
      if (live && !m[l]) throw new Error(`simulate ${this.k.name}: a warp shuffle that lane ${l} of warp ${this.warp} does not reach (a branch that differs between lanes: CUDA's full-mask shuffle is undefined there)`);
    }
  }

  private vec(f: (lane: number) => number, m: Mask): Vec {
    const out = new Array<number>(W).fill(0);
    for (let l = 0; l < W; l++) if (m[l]) out[l] = f(l);
    return out;
  }

  private loadBuffer(name: string, idx: number): number {
    const b = this.buffers[name]!;
    if (!Number.isInteger(idx) || idx < 0 || idx >= b.length) throw new Error(`simulate ${this.k.name}: ${name}[${idx}] is out of bounds (${b.length} elements)`);
    const e = this.elem.get(name);
    if (e === "bf16") return decodeBits(b[idx]!, "bf16");
    if (e === "f8e4m3") return decodeBits(b[idx]!, "f8e4m3fn");
    return b[idx]!;
  }

  private storeBuffer(name: string, idx: number, v: number): void {
    const b = this.buffers[name]!;
    if (!Number.isInteger(idx) || idx < 0 || idx >= b.length) throw new Error(`simulate ${this.k.name}: store to ${name}[${idx}] is out of bounds (${b.length} elements)`);
    const e = this.elem.get(name);
    if (e === "bf16") b[idx] = encodeBits(v, "bf16");
    else if (e === "f8e4m3") b[idx] = encodeBits(v, "f8e4m3fn");
    else b[idx] = v;
  }

  private sharedOf(name: string): { t: KType; a: Float64Array } {
    const s = this.shared.get(name);
    if (!s) throw new Error(`simulate ${this.k.name}: no workgroup array ${name}`);
    return s;
  }

  eval(e: Expr, m: Mask): Vec {
    switch (e.k) {
      case "lit":
        return new Array<number>(W).fill(e.v);
      case "ref": {
        const v = this.vars.get(e.name);
        if (!v) throw new Error(`simulate ${this.k.name}: ${e.name} read before it is set`);
        return v;
      }
      case "uni":
        return new Array<number>(W).fill(this.uniforms[e.name]!);
      case "builtin":
        if (e.name === "nwg") return new Array<number>(W).fill(this.workgroups);
        return e.name === "wg" ? new Array<number>(W).fill(this.wg) : Array.from({ length: W }, (_, l) => this.warp * W + l);
      case "load": {
        const idx = this.eval(e.idx, m);
        const arr = this.arrays.get(e.buf);
        if (arr) return this.vec((l) => arr.a[l]![idx[l]!]!, m);
        if (this.shared.has(e.buf)) {
          const s = this.sharedOf(e.buf);
          return this.vec((l) => {
            if (idx[l]! < 0 || idx[l]! >= s.a.length) throw new Error(`simulate ${this.k.name}: ${e.buf}[${idx[l]}] is out of bounds`);
            return s.a[idx[l]!]!;
          }, m);
        }
        return this.vec((l) => this.loadBuffer(e.buf, idx[l]!), m);
      }
      case "word": {
        const idx = this.eval(e.idx, m);
        const b = this.buffers[e.buf]!;
        return this.vec((l) => {
          const i = 2 * idx[l]!;
          if (i < 0 || i + 1 >= b.length) throw new Error(`simulate ${this.k.name}: word ${idx[l]} of ${e.buf} is out of bounds`);
          return u32(b[i]! | (b[i + 1]! << 16));
        }, m);
      }
      case "half": {
        const a = this.eval(e.a, m);
        return this.vec((l) => bitsF32(e.hi ? a[l]! & 0xffff0000 : a[l]! << 16), m);
      }
      case "e4m3Byte": {
        const a = this.eval(e.a, m);
        return this.vec((l) => decodeBits((a[l]! >>> (8 * e.byte)) & 0xff, "f8e4m3fn"), m);
      }
      case "bitsF32": {
        const a = this.eval(e.a, m);
        return this.vec((l) => bitsF32(a[l]!), m);
      }
      case "quot": {
        // The quotient rounded once, as the CUDA form's FMA correction gives it, which holds only
        // for r = 1 / b rounded once (checked: another r would pass here and fail on the GPU).
        const [a, b, r] = [this.eval(e.a, m), this.eval(e.b, m), this.eval(e.r, m)];
        return this.vec((l) => {
          if (!Object.is(r[l]!, binary("/", "f32", 1, b[l]!))) throw new Error(`simulate: kir quot's r (${r[l]}) is not 1 / b (b ${b[l]})`);
          return binary("/", "f32", a[l]!, b[l]!);
        }, m);
      }
      case "packE4m3": {
        const vs = e.a.map((x) => this.eval(x, m));
        return this.vec((l) => u32(vs.reduce((w, v, j) => w | (encodeBits(v[l]!, "f8e4m3fn") << (8 * j)), 0)), m);
      }
      case "pack": {
        const [lo, hi] = [this.eval(e.lo, m), this.eval(e.hi, m)];
        return this.vec((l) => u32(encodeBits(lo[l]!, "bf16") | (encodeBits(hi[l]!, "bf16") << 16)), m);
      }
      case "bin": {
        const [a, b] = [this.eval(e.a, m), this.eval(e.b, m)];
        const t = e.a.t;
        return this.vec((l) => binary(e.op, t, a[l]!, b[l]!), m);
      }
      case "un": {
        const a = this.eval(e.a, m);
        return this.vec((l) => unary(e.op, e.t, a[l]!), m);
      }
      case "sel": {
        // As CUDA's ?: does, each lane evaluates only its side (a load there may be out of range).
        const c = this.eval(e.c, m);
        const a = this.eval(e.a, m.map((x, l) => x && !!c[l]));
        const b = this.eval(e.b, m.map((x, l) => x && !c[l]));
        return this.vec((l) => (c[l] ? a[l]! : b[l]!), m);
      }
      case "conv": {
        const a = this.eval(e.a, m);
        return this.vec((l) => (e.t === "f32" ? f32(a[l]!) : e.t === "i32" ? i32(Math.trunc(a[l]!)) : e.t === "u32" ? u32(Math.trunc(a[l]!)) : a[l] ? 1 : 0), m);
      }
      case "round": {
        const a = this.eval(e.a, m);
        const dt = e.to === "bf16" ? "bf16" : e.to === "f16" ? "f16" : e.to;
        return this.vec((l) => decodeBits(encodeBits(a[l]!, dt), dt), m);
      }
      case "call": {
        const a = this.eval(e.a, m);
        // pow2_ceil: the smallest power of two at least x (a UE8M0 scale).
        return this.vec((l) => {
          const b = f32Bits(a[l]!);
          return (b & 0x007fffff) === 0 ? a[l]! : bitsF32(((b & 0x7f800000) + 0x00800000) >>> 0);
        }, m);
      }
      case "shfl": {
        this.wholeWarp(m);
        const a = this.eval(e.a, new Array<boolean>(W).fill(true));
        return this.vec((l) => a[l ^ e.mask]!, m);
      }
      case "warpMax": {
        this.wholeWarp(m);
        const a = this.eval(e.a, new Array<boolean>(W).fill(true));
        const top = a.reduce((x, y) => Math.max(x, y));
        return this.vec(() => top, m);
      }
      case "firstLane": {
        this.wholeWarp(m);
        const a = this.eval(e.a, new Array<boolean>(W).fill(true));
        const first = a.findIndex((x) => x !== 0);
        return this.vec(() => first, m);
      }
      case "shflIdx": {
        this.wholeWarp(m);
        const a = this.eval(e.a, new Array<boolean>(W).fill(true));
        const src = this.eval(e.lane, m);
        return this.vec((l) => a[src[l]! & (W - 1)]!, m);
      }
    }
  }

  private setVar(name: string, t: KType, v: Vec, m: Mask): void {
    const old = this.vars.get(name) ?? new Array<number>(W).fill(0);
    this.vars.set(
      name,
      old.map((x, l) => (m[l] ? fit(t, v[l]!) : x)),
    );
    this.types.set(name, t);
  }

  /** Runs statements under a lane mask, yielding after each ("run"), at each barrier, and while it waits on an mbarrier ("wait"). */
  *run(ss: Stmt[], m: Mask): Generator<"run" | "barrier" | "narrow" | "wait", void, void> {
    if (!m.some((x) => x)) return;
    for (const s of ss) {
      yield "run";
      switch (s.k) {
        case "let":
        case "var":
          this.setVar(s.name, s.k === "let" ? s.e.t : s.t, this.eval(s.e, m), m);
          break;
        case "set":
          this.setVar(s.name, this.types.get(s.name)!, this.eval(s.e, m), m);
          break;
        case "array":
          this.arrays.set(s.name, { t: s.t, a: Array.from({ length: W }, () => new Float64Array(s.size)) });
          break;
        case "store": {
          const [idx, v] = [this.eval(s.idx, m), this.eval(s.e, m)];
          const arr = this.arrays.get(s.buf);
          for (let l = 0; l < W; l++) {
            if (!m[l]) continue;
            if (arr) arr.a[l]![idx[l]!] = fit(arr.t, v[l]!);
            else if (this.shared.has(s.buf)) {
              const sh = this.sharedOf(s.buf);
              if (idx[l]! < 0 || idx[l]! >= sh.a.length) throw new Error(`simulate ${this.k.name}: store to ${s.buf}[${idx[l]}] is out of bounds`);
              sh.a[idx[l]!] = fit(sh.t, v[l]!);
            } else this.storeBuffer(s.buf, idx[l]!, v[l]!);
          }
          break;
        }
        case "if": {
          const c = this.eval(s.c, m);
          yield* this.run(s.then, m.map((x, l) => x && !!c[l]));
          if (s.else) yield* this.run(s.else, m.map((x, l) => x && !c[l]));
          break;
        }
        case "for": {
          this.setVar(s.v, "i32", this.eval(s.from, m), m);
          // The lanes still looping (a lane leaves when its bound is reached).
          let on = m;
          for (;;) {
            const v = this.vars.get(s.v)!;
            const to = this.eval(s.to, on);
            on = on.map((x, l) => x && v[l]! < to[l]!);
            if (!on.some((x) => x)) break;
            yield* this.run(s.body, on);
            const step = this.eval(s.step, on);
            this.setVar(s.v, "i32", this.vars.get(s.v)!.map((x, l) => x + step[l]!), on);
          }
          break;
        }
        case "barrier":
          if (s.threads !== undefined && s.threads < this.k.wg) {
            if (s.threads % W !== 0) throw new Error(`simulate ${this.k.name}: a barrier among ${s.threads} threads (whole warps only)`);
            this.narrow = s.threads;
            yield "narrow";
          } else yield "barrier";
          break;
        case "warpBarrier":
        case "copyCommit":
        case "copyWait":
          break;
        case "copy16": {
          const [di, si, ok] = [this.eval(s.dstIdx, m), this.eval(s.srcIdx, m), this.eval(s.valid, m)];
          const dst = this.sharedOf(s.dst);
          const src = this.buffers[s.src]!;
          const e = this.elem.get(s.src);
          for (let l = 0; l < W; l++) {
            if (!m[l]) continue;
            for (let j = 0; j < 4; j++) {
              let word = 0;
              if (ok[l]) {
                if (e === "bf16") word = u32(src[si[l]! + 2 * j]! | (src[si[l]! + 2 * j + 1]! << 16));
                else if (e === "f8e4m3") word = u32(src[si[l]! + 4 * j]! | (src[si[l]! + 4 * j + 1]! << 8) | (src[si[l]! + 4 * j + 2]! << 16) | (src[si[l]! + 4 * j + 3]! << 24));
                else word = e === "f32" ? f32Bits(src[si[l]! + j]!) : u32(src[si[l]! + j]!);
              }
              dst.a[di[l]! + j] = word;
            }
          }
          break;
        }
        case "store16": {
          const idx = this.eval(s.idx, m);
          const words = s.words.map((w) => this.eval(w, m));
          const b = this.buffers[s.buf]!;
          for (let l = 0; l < W; l++) {
            if (!m[l]) continue;
            if (idx[l]! % 4 !== 0) throw new Error(`simulate ${this.k.name}: store16 to ${s.buf} at word ${idx[l]}, not 16-byte aligned`);
            if (this.elem.get(s.buf) === "f8e4m3") {
              for (let j = 0; j < 16; j++) {
                const e = 4 * idx[l]! + j;
                if (e < 0 || e >= b.length) throw new Error(`simulate ${this.k.name}: store16 to byte ${e} of ${s.buf} is out of bounds`);
                b[e] = (words[j >> 2]![l]! >>> (8 * (j & 3))) & 0xff;
              }
              continue;
            }
            for (let j = 0; j < 4; j++) {
              const e = 2 * (idx[l]! + j);
              if (e < 0 || e + 1 >= b.length) throw new Error(`simulate ${this.k.name}: store16 to word ${idx[l]! + j} of ${s.buf} is out of bounds`);
              b[e] = words[j]![l]! & 0xffff;
              b[e + 1] = words[j]![l]! >>> 16;
            }
          }
          break;
        }
        case "load16": {
          const idx = this.eval(s.idx, m);
          const b = this.buffers[s.buf]!;
          s.names.forEach((name, j) => {
            this.vars.set(
              name,
              this.vec((l) => {
                if (idx[l]! % 4 !== 0) throw new Error(`simulate ${this.k.name}: load16 of ${s.buf} at word ${idx[l]}, not 16-byte aligned`);
                if (this.elem.get(s.buf) === "f8e4m3") {
                  const i = 4 * (idx[l]! + j);
                  if (i < 0 || i + 3 >= b.length) throw new Error(`simulate ${this.k.name}: word ${idx[l]! + j} of ${s.buf} is out of bounds`);
                  return u32(b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24));
                }
                if (b instanceof Float32Array) {
                  const w = idx[l]! + j;
                  if (w < 0 || w >= b.length) throw new Error(`simulate ${this.k.name}: word ${w} of ${s.buf} is out of bounds`);
                  return f32Bits(b[w]!);
                }
                const i = 2 * (idx[l]! + j);
                if (i < 0 || i + 1 >= b.length) throw new Error(`simulate ${this.k.name}: word ${idx[l]! + j} of ${s.buf} is out of bounds`);
                return u32(b[i]! | (b[i + 1]! << 16));
              }, m),
            );
            this.types.set(name, "u32");
          });
          break;
        }
        case "ldsm": {
          const addr = this.eval(s.idx, new Array<boolean>(W).fill(true));
          const src = this.sharedOf(s.src).a;
          const half = (row: number, c: number) => (src[addr[row]! + (c >> 1)]! >>> (16 * (c & 1))) & 0xffff;
          s.names.forEach((name, mat) => {
            const out = Array.from({ length: W }, (_, t) => {
              if (!s.trans) return u32(src[addr[mat * 8 + (t >> 2)]! + (t & 3)]!);
              const r = 2 * (t & 3);
              return u32(half(mat * 8 + r, t >> 2) | (half(mat * 8 + r + 1, t >> 2) << 16));
            });
            this.vars.set(name, out);
            this.types.set(name, "u32");
          });
          break;
        }
        case "mma":
          this.mma(s, m);
          break;
        case "wgmma":
          this.wgmma(s, m);
          break;
        case "wgmmaFence":
        case "wgmmaCommit":
        case "wgmmaWait":
        case "fenceAsyncShared":
        case "setmaxnreg":
          break;
        case "mbarInit":
        case "mbarArrive": {
          const idx = this.eval(s.idx, m);
          const bar = this.sharedOf(s.bar).a;
          for (let l = 0; l < W; l++) {
            if (!m[l]) continue;
            const at = 2 * idx[l]!;
            if (at < 0 || at + 1 >= bar.length) throw new Error(`simulate ${this.k.name}: mbarrier ${idx[l]} of ${s.bar} is out of bounds`);
            // Word 0: arrivals still expected this phase; word 1: phase x 2^16 + arrivals a phase.
            if (s.k === "mbarInit") [bar[at], bar[at + 1]] = [s.count, s.count];
            else {
              const [count, phase] = [bar[at + 1]! % 65536, Math.floor(bar[at + 1]! / 65536)];
              if (count === 0) throw new Error(`simulate ${this.k.name}: an arrival on mbarrier ${idx[l]} of ${s.bar} before its init`);
              bar[at] = bar[at]! - 1;
              if (bar[at] === 0) [bar[at], bar[at + 1]] = [count, (phase + 1) * 65536 + count];
            }
          }
          break;
        }
        case "mbarWait": {
          // Until the phase of this parity has completed: the current phase's parity differs.
          const bar = this.sharedOf(s.bar).a;
          const blocked = () => {
            const [idx, parity] = [this.eval(s.idx, m), this.eval(s.parity, m)];
            return m.some((on, l) => on && Math.floor(bar[2 * idx[l]! + 1]! / 65536) % 2 === parity[l]! % 2);
          };
          while (blocked()) yield "wait";
          break;
        }
        case "gridSync":
          throw new Error(`simulate ${this.k.name}: a grid barrier inside a loop or branch`);
        case "fence":
          // Workgroups run one after another here: every earlier write is already visible.
          break;
        case "prefetchL2": {
          // Changes nothing; but the range must be one the target takes (16-byte units) inside the buffer.
          const [at, n] = [this.eval(s.byte, m), this.eval(s.bytes, m)];
          const size = this.buffers[s.buf]!.byteLength;
          m.forEach((on, l) => {
            if (on && (at[l]! % 16 !== 0 || n[l]! % 16 !== 0 || at[l]! < 0 || n[l]! <= 0 || at[l]! + n[l]! > size))
              throw new Error(`simulate ${this.k.name}: prefetch of bytes ${at[l]} .. +${n[l]} of ${s.buf} (${size} bytes; 16-byte units)`);
            if (on) this.observe.prefetch?.(s.buf, at[l]!, n[l]!);
          });
          break;
        }
        case "atomicAdd": {
          const [idx, v] = [this.eval(s.idx, m), this.eval(s.e, m)];
          const old = new Array<number>(W).fill(0);
          for (let l = 0; l < W; l++) {
            if (!m[l]) continue;
            old[l] = this.loadBuffer(s.buf, idx[l]!);
            this.storeBuffer(s.buf, idx[l]!, old[l]! + v[l]!);
          }
          this.setVar(s.name, "i32", old, m);
          break;
        }
      }
    }
  }

  /**
   * This warp's part of a warpgroup MMA: rows 16 w .. 16 w + 15 (w: the warp within its warpgroup)
   * of D = A B^T + D, A's 64 rows and B's n rows read from the 128-byte-swizzled shared tile (row r
   * of a tile at word r x 32 of its 1024-byte-aligned block, 16-byte chunk c at chunk c ^ (r % 8);
   * the MMA's k slice is the 32 bytes its address points into), f32 sums as mma's.
   */
  private wgmma(s: Extract<Stmt, { k: "wgmma" }>, m: Mask): void {
    if (!m.every((x, l) => x || this.warp * W + l >= this.k.wg)) throw new Error(`simulate ${this.k.name}: a wgmma with lanes of the warp inactive`);
    const acc = this.arrays.get(s.acc)!;
    const src = this.sharedOf(s.src).a;
    const regs = Array.isArray(s.a) ? s.a.map((w) => this.eval(w, m)) : undefined;
    const [a, b] = [Array.isArray(s.a) ? 0 : this.eval(s.a, m)[0]!, this.eval(s.b, m)[0]!];
    const fp8 = s.shape.ab === "e4m3";
    const K = s.shape.k;
    const bytes = fp8 ? 1 : 2;
    // Element kk of tile row r (the row's first word base) in the slice starting `slice` bytes into the row.
    const el = (base: number, r: number, slice: number, kk: number) => {
      const byte = slice + kk * bytes;
      const word = src[base + r * 32 + (((byte >> 4) ^ ((base / 32 + r) % 8)) << 2) + ((byte & 15) >> 2)]!;
      return fp8 ? decodeBits((word >>> (8 * (byte & 3))) & 0xff, "f8e4m3fn") : decodeBits((word >>> (8 * (byte & 2))) & 0xffff, "bf16");
    };
    const tile = (at: number) => ({ base: at - (at % 32), slice: (at % 32) * 4 });
    const [ta, tb] = [tile(a), tile(b)];
    const wq = this.warp % 4;
    // The warp's 16 rows of A and all n rows of B, decoded once.
    // A from registers: lane 4 g + t holds row g's k 2t, 2t + 1 (word 0), row g + 8's (1), then k + 8 (2, 3).
    const fromRegs = (r: number, kk: number) => {
      const lane = 4 * (r % 8) + ((kk % 8) >> 1);
      const word = regs![(r >= 8 ? 1 : 0) + (kk >= 8 ? 2 : 0)]![lane]!;
      return decodeBits((word >>> (16 * (kk & 1))) & 0xffff, "bf16");
    };
    const A = Array.from({ length: 16 }, (_, r) => Array.from({ length: K }, (_, kk) => (regs ? fromRegs(r, kk) : el(ta.base, 16 * wq + r, ta.slice, kk))));
    // MN-major B: column c of slice row kk in chunk c / 64, its 2 bytes at (c % 64) x 2 of the swizzled row.
    const elMn = (c: number, kk: number) => {
      const row = b + kk * 32 + (c >> 6) * s.bMn!;
      const byte = (c & 63) * 2;
      const word = src[row + (((byte >> 4) ^ ((row / 32) % 8)) << 2) + ((byte & 15) >> 2)]!;
      return decodeBits((word >>> (8 * (byte & 2))) & 0xffff, "bf16");
    };
    if (s.bMn !== undefined && b % 32 !== 0) throw new Error(`simulate ${this.k.name}: an MN-major wgmma B starts at a row (word ${b})`);
    const B = Array.from({ length: s.shape.n }, (_, c) => Array.from({ length: K }, (_, kk) => (s.bMn !== undefined ? elMn(c, kk) : el(tb.base, c, tb.slice, kk))));
    for (let t = 0; t < W; t++) {
      const [gr, tq] = [t >> 2, t & 3];
      for (let j = 0; j < s.shape.n / 8; j++)
        for (let q = 0; q < 4; q++) {
          const [ar, bc] = [A[gr + (q >= 2 ? 8 : 0)]!, B[8 * j + 2 * tq + (q & 1)]!];
          let sum = 0;
          for (let kk = 0; kk < K; kk++) sum += ar[kk]! * bc[kk]!;
          acc.a[t]![4 * j + q] = f32((s.zero ? 0 : acc.a[t]![4 * j + q]!) + sum);
        }
    }
  }

  /** One warp-wide MMA: the fragments decoded to matrices, D = A B + C in f32 (exact products, f32 sums). */
  private mma(s: Extract<Stmt, { k: "mma" }>, m: Mask): void {
    if (!m.every((x) => x)) throw new Error(`simulate ${this.k.name}: an mma with lanes of the warp inactive`);
    const acc = this.arrays.get(s.acc)!;
    const at = this.eval(s.at, m);
    const a = s.a.map((e) => this.eval(e, m));
    const b = s.b.map((e) => this.eval(e, m));
    const fp8 = s.shape === "m16n8k32.e4m3";
    const K = fp8 ? 32 : 16;
    const A = Array.from({ length: 16 }, () => new Array<number>(K).fill(0));
    const B = Array.from({ length: K }, () => new Array<number>(8).fill(0));
    const el = (word: number, j: number) => (fp8 ? decodeBits((word >>> (8 * j)) & 0xff, "f8e4m3fn") : decodeBits((word >>> (16 * j)) & 0xffff, "bf16"));
    const per = fp8 ? 4 : 2;
    for (let t = 0; t < W; t++) {
      const gr = t >> 2;
      const tq = t & 3;
      for (let j = 0; j < per; j++) {
        const k0 = per * tq + j;
        A[gr]![k0] = el(a[0]![t]!, j);
        A[gr + 8]![k0] = el(a[1]![t]!, j);
        A[gr]![k0 + K / 2] = el(a[2]![t]!, j);
        A[gr + 8]![k0 + K / 2] = el(a[3]![t]!, j);
        B[k0]![gr] = el(b[0]![t]!, j);
        B[k0 + K / 2]![gr] = el(b[1]![t]!, j);
      }
    }
    const C = (row: number, col: number) => {
      const t = (row % 8) * 4 + (col >> 1);
      return { t, j: at[t]! + (row >= 8 ? 2 : 0) + (col & 1) };
    };
    for (let row = 0; row < 16; row++)
      for (let col = 0; col < 8; col++) {
        let sum = 0;
        for (let kk = 0; kk < K; kk++) sum += A[row]![kk]! * B[kk]![col]!;
        const { t, j } = C(row, col);
        acc.a[t]![j] = f32(acc.a[t]![j]! + sum);
      }
  }
}
