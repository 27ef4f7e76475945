/** Narrow float formats round like hardware casts (nearest, ties to even); e4m3 saturates at 448. */
import { describe, expect, it } from "vitest";
import { decodeBits, encodeBits, roundTo, roundArrayInPlace, ulpOf } from "../../ir/numerics";

describe("rounding", () => {
  it("bf16: ties go to the even mantissa", () => {
    expect(roundTo(1 + 2 ** -8, "bf16")).toBe(1); // tie between 1 and 1+2^-7: even is 1
    expect(roundTo(1 + 3 * 2 ** -8, "bf16")).toBe(1 + 2 ** -6); // tie between 1+2^-7 (odd) and 1+2^-6 (even)
    expect(roundTo(1 + 2 ** -8 + 2 ** -20, "bf16")).toBe(1 + 2 ** -7); // above the tie
    expect(roundTo(3.39e38, "bf16")).toBe(3.3895313892515355e38);
    expect(roundTo(3.397e38, "bf16")).toBe(Infinity); // past the midpoint to 2^128
  });

  it("bf16 array rounding agrees with the scalar rule", () => {
    const xs = Float32Array.from({ length: 2000 }, (_, i) => Math.sin(i * 1.37) * 10 ** ((i % 9) - 4));
    const a = Float32Array.from(xs);
    roundArrayInPlace(a, "bf16");
    xs.forEach((x, i) => expect(a[i]).toBe(roundTo(x, "bf16")));
  });

  it("f16: max, overflow, subnormals", () => {
    expect(roundTo(65504, "f16")).toBe(65504);
    expect(roundTo(65519, "f16")).toBe(65504);
    expect(roundTo(65520, "f16")).toBe(Infinity); // tie rounds to even = 2^16, which overflows
    expect(roundTo(2 ** -24, "f16")).toBe(2 ** -24);
    expect(roundTo(2 ** -25, "f16")).toBe(0); // tie with 0: even
    expect(roundTo(3 * 2 ** -26, "f16")).toBe(2 ** -24);
  });

  it("f8e4m3fn saturates at ±448 and has subnormals down to 2^-9", () => {
    expect(roundTo(448, "f8e4m3fn")).toBe(448);
    expect(roundTo(500, "f8e4m3fn")).toBe(448);
    expect(roundTo(-1e9, "f8e4m3fn")).toBe(-448);
    expect(roundTo(Infinity, "f8e4m3fn")).toBe(448);
    expect(roundTo(2 ** -9, "f8e4m3fn")).toBe(2 ** -9);
    expect(roundTo(2 ** -10, "f8e4m3fn")).toBe(0);
    expect(roundTo(1.0625, "f8e4m3fn")).toBe(1); // tie between 1 and 1.125
    expect(roundTo(1.1875, "f8e4m3fn")).toBe(1.25); // tie between 1.125 (odd) and 1.25 (even)
    expect(Number.isNaN(roundTo(NaN, "f8e4m3fn"))).toBe(true);
  });

  it("f8e5m2 overflows to infinity", () => {
    expect(roundTo(57344, "f8e5m2")).toBe(57344);
    expect(roundTo(61440, "f8e5m2")).toBe(Infinity);
    expect(roundTo(61439, "f8e5m2")).toBe(57344);
  });
});

describe("bit encodings", () => {
  it("every e4m3 and e5m2 code decodes and re-encodes to itself", () => {
    for (const dt of ["f8e4m3fn", "f8e5m2"] as const) {
      for (let code = 0; code < 256; code++) {
        const v = decodeBits(code, dt);
        if (Number.isNaN(v)) continue;
        expect(encodeBits(v, dt), `${dt} code ${code}`).toBe(code);
      }
    }
  });

  it("e4m3 codes have the documented values", () => {
    expect(decodeBits(0x7e, "f8e4m3fn")).toBe(448);
    expect(decodeBits(0x01, "f8e4m3fn")).toBe(2 ** -9);
    expect(decodeBits(0x38, "f8e4m3fn")).toBe(1);
    expect(Number.isNaN(decodeBits(0x7f, "f8e4m3fn"))).toBe(true);
    expect(decodeBits(0xb8, "f8e4m3fn")).toBe(-1);
  });

  it("every f16 code decodes and re-encodes to itself", () => {
    for (let code = 0; code < 65536; code++) {
      const v = decodeBits(code, "f16");
      if (Number.isNaN(v)) continue;
      expect(encodeBits(v, "f16")).toBe(code);
    }
  });

  it("bf16 encoding rounds", () => {
    expect(encodeBits(1, "bf16")).toBe(0x3f80);
    expect(encodeBits(1 + 2 ** -7, "bf16")).toBe(0x3f81);
    expect(decodeBits(0x3f81, "bf16")).toBe(1 + 2 ** -7);
  });

  it("rounds a double that is not an f32 directly (no double rounding through f32), and far values by range", () => {
    // 1 + 2^-8 + 2^-30 is above bf16's tie but rounds to the tie in f32 first, which would go to 1.
    expect(Math.fround(1 + 2 ** -8 + 2 ** -30)).toBe(1 + 2 ** -8);
    expect(roundTo(1 + 2 ** -8 + 2 ** -30, "bf16")).toBe(1 + 2 ** -7);
    expect(encodeBits(1 + 2 ** -8 + 2 ** -30, "bf16")).toBe(0x3f81);
    expect(roundTo(-(1 + 3 * 2 ** -8), "bf16")).toBe(-(1 + 2 ** -6));
    expect(Object.is(roundTo(-0, "bf16"), -0)).toBe(true);
    expect(Object.is(roundTo(-(2 ** -140), "f8e4m3fn"), -0)).toBe(true);
    for (const x of [1e300, 2 ** 200, 3.4e38]) {
      expect(roundTo(x, "bf16")).toBe(Infinity);
      expect(roundTo(-x, "f16")).toBe(-Infinity);
      expect(roundTo(-x, "f8e4m3fn")).toBe(-448);
      expect(roundTo(x, "f8e5m2")).toBe(Infinity);
    }
    expect(roundTo(464, "f8e4m3fn")).toBe(448); // between 448 and 2^9: saturates
    expect(roundTo(2 ** -10, "f8e4m3fn")).toBe(0); // half the smallest subnormal: a tie, to even (0)
    expect(roundTo(3 * 2 ** -11, "f8e4m3fn")).toBe(2 ** -9); // above the tie
  });

  it("ulpOf: a format's spacing at a magnitude, the subnormals' below the smallest normal", () => {
    expect(ulpOf(1, "bf16")).toBe(2 ** -7);
    expect(ulpOf(-3, "bf16")).toBe(2 ** -6);
    expect(ulpOf(3, "f16")).toBe(2 ** -9);
    expect(ulpOf(0, "f16")).toBe(2 ** -24);
    expect(ulpOf(2 ** -20, "f16")).toBe(2 ** -24);
    expect(ulpOf(300, "f8e4m3fn")).toBe(32);
    expect(ulpOf(1, "f32")).toBeUndefined();
  });
});
