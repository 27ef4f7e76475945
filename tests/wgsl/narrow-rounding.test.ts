/**
 * WGSL's rounding to the narrow float formats (backends/wgsl/render.ts round_*): the value of every
 * cast f32 -> narrow -> f32 as the interpreter computes it, ties, subnormals, overflow and signs
 * included; and an f16 model whose intermediate results are rounded in the kernels. Found unrounded
 * (2026-12-04): round_f16 was unpack2x16float(pack2x16float(x)), which Mesa's lavapipe folds to x, so
 * `--dtype f16` on WebGPU computed in f32; and round_f8e5m2's constant infinity did not compile.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Tensor } from "../../ir/tensor";
import { readAllSafetensors, writeSafetensors } from "../../backends/weights/safetensors";
import { cli } from "../support/cli";
import { GOLDEN_DIR, GOLDEN_FILE, scratchDir } from "../support/paths";

const dir = scratchDir("lingc-wgsl-narrow-");

/**
 * Values around each format's spacing, ties, subnormals and overflow. (No f32 subnormals: WGSL may
 * flush those to zero, which the formats here never need.)
 */
function probeValues(): number[] {
  const xs: number[] = [0, -0, 1, -1, Infinity, -Infinity, 448, 449, 464, 465, 480, 57344, 61439, 61440, 65504, 65519, 65520, 65536, 3.3895313892515355e38, 3.4e38];
  for (const [mant, minNormalExp] of [[7, -126], [10, -14], [3, -6], [2, -14]] as const) {
    for (const e of [minNormalExp - mant - 1, minNormalExp - mant, minNormalExp - 2, minNormalExp, 0, 3, 7, 14]) {
      const step = 2 ** (e - mant);
      for (const k of [1, 1.5, 2.5, 3, 3.5, 1.25, 1.75, 2 ** mant + 0.5, 2 ** mant + 1.5]) xs.push(2 ** e + k * step, -(2 ** e + k * step));
    }
  }
  let s = 7;
  for (let i = 0; i < 200; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    xs.push(Math.fround(((s / 2 ** 32) - 0.5) * 2 ** ((i % 40) - 20)));
  }
  return xs.map(Math.fround).filter((x) => x === 0 || !Number.isFinite(x) || Math.abs(x) >= 2 ** -126);
}

describe("WGSL narrow-float rounding", () => {
  it("casts f32 to bf16, f16, f8e4m3fn and f8e5m2 as the interpreter does, value for value", async () => {
    const xs = probeValues();
    const n = xs.length;
    const dts = ["bf16", "f16", "f8e4m3fn", "f8e5m2"];
    const body = dts.map((dt, i) => `    %q${i} = cast(%x) {to = ${dt}} : ${dt}[${n}]\n    %r${i} = cast(%q${i}) {to = f32} : f32[${n}]`).join("\n");
    const text = `module @m {\n  func @m(%x: f32[${n}]) -> (${dts.map((_, i) => `r${i}: f32[${n}]`).join(", ")}) {\n${body}\n    return ${dts.map((_, i) => `%r${i}`).join(", ")}\n  }\n}\n`;
    writeFileSync(join(dir, "casts.lir"), text);
    writeSafetensors(join(dir, "x.safetensors"), { x: Tensor.from("f32", [n], xs) });
    const out: Record<string, Record<string, Tensor>> = {};
    for (const backend of ["interp", "wgsl"]) {
      const file = join(dir, `casts-${backend}.safetensors`);
      const r = await cli("run", join(dir, "casts.lir"), "--input", join(dir, "x.safetensors"), "--backend", backend, "--out", file);
      expect(r.code, r.stderr).toBe(0);
      out[backend] = readAllSafetensors(file);
    }
    dts.forEach((dt, i) => {
      const [want, got] = [out["interp"]![`r${i}`]!.data, out["wgsl"]![`r${i}`]!.data];
      const wrong = xs.map((x, j) => [x, want[j]!, got[j]!]).filter(([, w, g]) => !Object.is(w, g));
      expect(wrong, `${dt}: [input, interpreter, wgsl]`).toEqual([]);
    });
  });

  it("an f16 model rounds its intermediate results in the kernels: ling-tiny's first layer as the interpreter computes it", async () => {
    const got: Record<string, Record<string, Tensor>> = {};
    for (const backend of ["interp", "wgsl"]) {
      const file = join(dir, `tiny16-${backend}.safetensors`);
      const r = await cli("run", GOLDEN_DIR, "--backend", backend, "--dtype", "f16", "--input", GOLDEN_FILE, "--observe", "model.layers.0.attention.v", "--out", file);
      expect(r.code, r.stderr).toBe(0);
      got[backend] = readAllSafetensors(file);
    }
    // An output and an observed value: both f16, as the graph declares them.
    for (const name of ["present.0.key", "present.0.value", "model.layers.0.attention.v"]) {
      const [a, b] = [got["interp"]![name]!, got["wgsl"]![name]!];
      expect(b.dtype, name).toBe("f16");
      let equal = 0;
      b.data.forEach((v, i) => {
        const w = a.data[i]!;
        if (v === w) equal++;
        // Sums in f32 against the interpreter's doubles may tip a value on an f16 rounding boundary.
        const ulp = 2 ** (Math.max(Math.floor(Math.log2(Math.max(Math.abs(v), Math.abs(w), 2 ** -14))), -14) - 10);
        expect(Math.abs(v - w), `${name}[${i}]`).toBeLessThanOrEqual(2 * ulp);
      });
      // Unrounded (f32) intermediates leave about a third of these equal.
      expect(equal / b.data.length, name).toBeGreaterThanOrEqual(0.9);
    }
  });
});
