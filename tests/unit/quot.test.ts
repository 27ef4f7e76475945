/**
 * kir `quot` (a / b given r = 1 / b): the simulator and WGSL divide, CUDA's `lingc::quot` corrects
 * a * r by one FMA residual (Markstein). Here that formula in exact f32 arithmetic (an FMA rounded
 * once, through round-to-odd in f64) against the division, on the operands a quantize gives it:
 * bf16 values, the scale of their group's amax. The test reads the formula from the runtime header,
 * so a change there without this test's model fails.
 */
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import * as K from "../../backends/kernels/kir";
import { KernelBuilder } from "../../backends/kernels/kir";
import { simulate } from "../../backends/kernels/simulate";
import { rng } from "../support/fd";

const f32 = Math.fround;
const F64 = new Float64Array(1);
const BITS = new BigInt64Array(F64.buffer);

/** The f64 next to x toward `dir`'s sign (x finite, nonzero or not). */
function nextToward(x: number, dir: number): number {
  if (x === 0) return dir > 0 ? Number.MIN_VALUE : -Number.MIN_VALUE;
  F64[0] = x;
  BITS[0] += (x > 0) === (dir > 0) ? 1n : -1n;
  return F64[0];
}

/** a * b + c rounded once to f32 (a, b, c f32; no f32 underflow or overflow on these operands). */
function fmaF32(a: number, b: number, c: number): number {
  const p = a * b; // exact in f64: 24 + 24 bits
  const s = p + c;
  // TwoSum: the exact error of s.
  const bv = s - p;
  const err = p - (s - bv) + (c - bv);
  if (err === 0) return f32(s);
  // Round to odd in f64 (53 >= 24 + 2 bits), then to nearest f32: the f32 value the exact sum rounds to.
  F64[0] = s;
  const odd = (BITS[0] & 1n) === 1n ? s : nextToward(s, err);
  return f32(odd);
}

/** lingc::quot's arithmetic. */
function quot(a: number, b: number, r: number): number {
  const q0 = f32(a * r);
  const q = fmaF32(fmaF32(-q0, b, a), r, q0);
  return Math.sign(a) < 0 || Object.is(a, -0) ? -Math.abs(q) : Math.abs(q);
}

/** A random value as bf16 (the top 16 bits of an f32, rounded to nearest even). */
function bf16(x: number): number {
  const v = new Float32Array([x]);
  const u = new Uint32Array(v.buffer);
  u[0] = ((u[0]! + 0x7fff + ((u[0]! >>> 16) & 1)) & 0xffff0000) >>> 0;
  return v[0]!;
}

describe("kir quot on CUDA: Markstein's corrected quotient equals the division", () => {
  it("the runtime header's lingc::quot is the formula modelled here", () => {
    const header = readFileSync("backends/cuda/runtime/lingc_runtime.h", "utf8");
    expect(header).toContain("const float q0 = a * r;");
    expect(header).toContain("return copysignf(fmaf(fmaf(-q0, b, a), r, q0), a);");
  });

  it("on 300,000 quantize operands (bf16 values up to their group's amax, scales max(amax, 1e-12) / 448 over 2^-60 .. 2^50), zeros of both signs and the amax itself: bit for bit a / b", () => {
    const r = rng(2026);
    let checked = 0;
    let differ = 0;
    for (let n = 0; n < 300_000; n++) {
      const amax = bf16(2 ** (Math.floor(r() * 110) - 60) * (1 + r()));
      const pick = r();
      const a = pick < 0.01 ? 0 : pick < 0.02 ? -0 : pick < 0.03 ? amax : pick < 0.04 ? -amax : bf16(amax * (2 * r() - 1) * (r() < 0.25 ? 2 ** -Math.floor(r() * 40) : 1));
      if (Math.abs(a) > amax) continue;
      const s = f32(f32(Math.max(amax, f32(1e-12))) / 448);
      const rs = f32(1 / s);
      const want = f32(a / s);
      const got = quot(a, s, rs);
      checked++;
      if (!Object.is(got, want)) differ++;
    }
    expect(checked).toBeGreaterThan(290_000);
    expect(differ).toBe(0);
  });

  it("the model's FMA rounds once where a product and a sum rounded apart would not (so the check above can fail)", () => {
    // 1 + 2^-23 squared minus 1: exactly 2^-22 + 2^-46; rounded apart, the square loses 2^-46.
    const x = f32(1 + 2 ** -23);
    expect(fmaF32(x, x, -1)).toBe(f32(2 ** -22 + 2 ** -46));
    expect(f32(f32(x * x) - 1)).toBe(2 ** -22);
    // Without the residual's correction, a * r alone differs from the division on some operands.
    const r = rng(7);
    let plain = 0;
    for (let n = 0; n < 20_000; n++) {
      const s = f32(f32(1 + r()) / 448);
      const a = bf16(2 * r() - 1);
      if (f32(a * f32(1 / s)) !== f32(a / s)) plain++;
    }
    expect(plain).toBeGreaterThan(100);
  });

  it("the simulator divides for quot and refuses an r that is not 1 / b (which would pass there and fail on CUDA)", () => {
    const run = (r: (b: K.Expr) => K.Expr) => {
      const kb = new KernelBuilder("q", 32, 32);
      const out = kb.buffer("out", "f32", true);
      const a = kb.let("a", K.sub(K.toF(kb.lid), K.f(16)));
      const b = kb.let("b", K.f(0.3));
      kb.store(out, kb.lid, K.quot(a, b, kb.let("r", r(b))));
      const buf = new Float32Array(32);
      simulate(kb.kernel, { out: buf }, {}, 1);
      return buf;
    };
    expect([...run((b) => K.div(K.f(1), b))]).toEqual(Array.from({ length: 32 }, (_, l) => f32((l - 16) / f32(0.3))));
    expect(() => run((b) => K.mul(K.div(K.f(1), b), K.f(1.0000001)))).toThrow("kir quot's r");
  });
});
