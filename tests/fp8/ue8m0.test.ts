/**
 * UE8M0 scales: an fp8 weight whose scale grid is stored as u8 (`scale(u8, block(128, 128))`) holds
 * exponents, the factor being 2^(e - 127) (ir/quant.ts scaleFactors). Each backend that runs FP8
 * decodes them (interp and wgsl at load, onnx in the graph, the browser's weight provider as it
 * reads the file), and widens bf16 scales; the cuda target refuses both by name instead of reading
 * exponents or bf16 bits as f32 factors.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import "../../ir/ops";
import type { LoadedModel } from "../../backends/backend";
import { writeSafetensors } from "../../backends/weights/safetensors";
import { weightsFromBytes } from "../../backends/wgsl/browser";
import { loadModel } from "../../compiler/driver/load";
import { openSource } from "../../compiler/driver/source";
import { scaleFactors } from "../../ir/quant";
import { Tensor } from "../../ir/tensor";
import { cli } from "../support/cli";
import { scratchDir } from "../support/paths";

const dir = scratchDir("lingc-ue8m0-");
const T = 3;
const K = 256;
const O = 256;
// A 2 x 2 grid of 128 x 128 blocks with exponents below, at and above the bias, and the smallest (2^-127, subnormal in f32).
const EXPONENTS = [120, 127, 131, 0];
const lir = join(dir, "p.lir");
const weights = join(dir, "w.safetensors");
// The same factors as bf16 scales (widened on every backend that runs them).
const lirBf16 = join(dir, "p-bf16.lir");
const weightsBf16 = join(dir, "w-bf16.safetensors");

// Codes: e4m3 bytes of small values of both signs (0x30 = 0.5, 0x38 = 1, 0xb8 = -1, 0x40 = 2).
const CODES = [0x30, 0x38, 0xb8, 0x40];
const code = (o: number, k: number) => CODES[(o * 7 + k * 3) % 4]!;
const value = (c: number) => ({ 0x30: 0.5, 0x38: 1, 0xb8: -1, 0x40: 2 })[c]!;
const x = Tensor.from("f32", [T, K], Array.from({ length: T * K }, (_, i) => ((i * 37) % 11) / 8 - 0.6));

/** y[t, o] = sum_k x[t, k] w[o, k] 2^(e(o, k) - 127), in f64. */
function reference(): number[] {
  const y: number[] = [];
  for (let t = 0; t < T; t++)
    for (let o = 0; o < O; o++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += x.data[t * K + k]! * value(code(o, k)) * 2 ** (EXPONENTS[Math.floor(o / 128) * 2 + Math.floor(k / 128)]! - 127);
      y.push(s);
    }
  return y;
}

const module = (scaleDtype: string) => `module @p {
  func @p(%x: f32[${T}, ${K}])
      weights(
        @w: f8e4m3fn[${O}, ${K}] scale(${scaleDtype}, block(128, 128))
      )
      -> (y: f32[${T}, ${O}]) {
    %y = linear(%x, @w) {out = f32} : f32[${T}, ${O}]
    return %y
  }
}
`;

beforeAll(() => {
  writeFileSync(lir, module("u8"));
  writeFileSync(lirBf16, module("bf16"));
  // The codes as the file stores them: an F8_E4M3 tensor is written from its values.
  const w = Tensor.from("f8e4m3fn", [O, K], Array.from({ length: O * K }, (_, i) => value(code(Math.floor(i / K), i % K))));
  writeSafetensors(weights, { w, w_scale_inv: Tensor.from("u8", [2, 2], EXPONENTS) });
  writeSafetensors(weightsBf16, { w, w_scale_inv: Tensor.from("bf16", [2, 2], EXPONENTS.map((e) => 2 ** (e - 127))) });
});

describe.each(["interp", "onnx", "wgsl"].flatMap((backend) => [[backend, "UE8M0 (u8)"], [backend, "bf16"]]))("%s, %s weight scales", (backend, kind) => {
  let model: LoadedModel;
  beforeAll(async () => {
    const [l, w] = kind === "bf16" ? [lirBf16, weightsBf16] : [lir, weights];
    model = (await loadModel({ source: await openSource(l, w), backend })).model;
  }, 60_000);
  afterAll(() => model.close());

  it("dequantize as 2^(e - 127) (u8: the exponent e; bf16: the factor): the linear matches the f64 reference within f32 rounding", async () => {
    const y = (await model.graphs["p"]!.run({ x }))["y"]!;
    const want = reference();
    const peak = Math.max(...want.map(Math.abs));
    let worst = 0;
    want.forEach((v, i) => (worst = Math.max(worst, Math.abs(y.data[i]! - v))));
    // Read as factors (e.g. 131 for 2^4), the result would be off by orders of magnitude.
    expect(worst / peak).toBeLessThan(1e-5);
  });
});

describe("UE8M0 scales elsewhere", () => {
  it("scaleFactors: 2^(e - 127), 255 is NaN; other dtypes are factors already", () => {
    expect(Array.from(scaleFactors([0, 126, 127, 128, 254], "u8"))).toEqual([2 ** -127, 0.5, 1, 2, 2 ** 127]);
    expect(scaleFactors([255], "u8")[0]).toBeNaN();
    expect(Array.from(scaleFactors([0.25, 3], "f32"))).toEqual([0.25, 3]);
  });

  it("the browser's weight provider decodes a u8 _scale_inv tensor, and leaves the codes alone", () => {
    const bytes = readFileSync(weights);
    const provide = weightsFromBytes(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    expect(Array.from(provide("w_scale_inv", [2, 2], "u8") as Float32Array)).toEqual(EXPONENTS.map((e) => 2 ** (e - 127)));
    expect((provide("w", [O, K], "f8e4m3fn") as Float32Array)[0]).toBe(value(code(0, 0)));
  });

  it("the cuda target refuses them by name (exit 1), writing nothing", async () => {
    const out = join(dir, "cuda");
    const r = await cli("compile", lir, "--target", "cuda", "--out", out);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("graph p: weight w has UE8M0 (u8) scales (f8e4m3fn[256, 256] scale(u8, block(128, 128))); the cuda target runs f32 scales only");
    expect(existsSync(out)).toBe(false);
  });
});
