/**
 * bf16 on the onnx backend. ONNX Runtime's CPU provider has no bf16 kernels for most ops, so the
 * runner holds bf16 tensors in f32 and rounds each computed bf16 result (backends/onnx/bf16-emulation.ts):
 * the IR's meaning of a bf16 op, so the interpreter's numbers up to summation order. The exported
 * model keeps its bf16 tensors.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { emitOnnx } from "../../backends/onnx/emit";
import { decodeModel } from "../../backends/onnx/proto";
import { createSession, fromOrt, loadOrt, toOrt } from "../../backends/onnx/runtime";
import { unboundLayout } from "../../backends/onnx/weights";
import { readAllSafetensors, writeSafetensors } from "../../backends/weights/safetensors";
import { parseModule } from "../../ir/parse";
import { Tensor } from "../../ir/tensor";
import { cli } from "../support/cli";
import { maxAbsDiff } from "../support/compare";
import { GOLDEN_DIR, GOLDEN_FILE, SMALL_DIR, SMALL_FP8_DIR, SMALL_FP8_GOLDEN, scratchDir } from "../support/paths";

const dir = scratchDir("lingc-onnx-bf16-");

// A norm, a projection, SwiGLU, causal attention and a residual, all in bf16.
const MODULE = `module @m {
  func @m(%x: bf16[2, 3, 8]) weights(@n: bf16[8], @w: bf16[16, 8], @o: bf16[8, 8]) -> (y: bf16[2, 3, 8], att: bf16[2, 2, 3, 4]) {
    %h = rms_norm(%x, @n) {eps = 1e-6} : bf16[2, 3, 8]
    %a = linear(%h, @w) : bf16[2, 3, 16]
    %g = slice(%a) {axis = 2, start = 0, end = 8} : bf16[2, 3, 8]
    %u = slice(%a) {axis = 2, start = 8, end = 16} : bf16[2, 3, 8]
    %sg = silu(%g) : bf16[2, 3, 8]
    %s = mul(%sg, %u) : bf16[2, 3, 8]
    %r = reshape(%s) {shape = [2, 3, 2, 4]} : bf16[2, 3, 2, 4]
    %q = transpose(%r) {perm = [0, 2, 1, 3]} : bf16[2, 2, 3, 4]
    %att = attention(%q, %q, %q) {scale = 0.5, causal = true} : bf16[2, 2, 3, 4]
    %t = transpose(%att) {perm = [0, 2, 1, 3]} : bf16[2, 3, 2, 4]
    %f = reshape(%t) {shape = [2, 3, 8]} : bf16[2, 3, 8]
    %l = linear(%f, @o) : bf16[2, 3, 8]
    %y = add(%x, %l) : bf16[2, 3, 8]
    return %y, %att
  }
}
`;

/** Seeded values rounded to bf16 (round to nearest even), so that they are exact bf16 weights. */
function bf16Random(shape: number[], seed: number, offset = 0): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const f = Float32Array.from({ length: n }, (_, k) => offset + Math.sin(seed * 7.1 + k * 1.618) * 1.7);
  const bits = new Uint32Array(f.buffer);
  for (let i = 0; i < n; i++) bits[i] = (bits[i]! + 0x7fff + ((bits[i]! >>> 16) & 1)) & 0xffff0000;
  return new Tensor("bf16", shape, Float64Array.from(f));
}

const isBf16Value = (v: number) => (new Uint32Array(Float32Array.of(v).buffer)[0]! & 0xffff) === 0;

describe("bf16 on the onnx backend", () => {
  it("computes a bf16 block as the interpreter does (its rounding points; sums apart); results and observed values are bf16 values, written as bf16", async () => {
    writeFileSync(join(dir, "m.lir"), MODULE);
    writeSafetensors(join(dir, "w.safetensors"), { n: bf16Random([8], 1, 1), w: bf16Random([16, 8], 2), o: bf16Random([8, 8], 3) });
    writeSafetensors(join(dir, "x.safetensors"), { x: bf16Random([2, 3, 8], 4) });
    const out: Record<string, Record<string, Tensor>> = {};
    for (const backend of ["interp", "onnx"]) {
      const file = join(dir, `${backend}.safetensors`);
      const r = await cli("run", join(dir, "m.lir"), "--weights", join(dir, "w.safetensors"), "--input", join(dir, "x.safetensors"), "--backend", backend, "--observe", "sg", "--out", file);
      expect(r.code, r.stderr).toBe(0);
      out[backend] = readAllSafetensors(file);
    }
    // The results and an observed value (silu's, rounded once).
    for (const name of ["y", "att", "sg"]) {
      const [a, b] = [out["interp"]![name]!, out["onnx"]![name]!];
      expect(b.dtype).toBe("bf16");
      // The same rounding points; ONNX Runtime's f32 sums and exponentials (against the
      // interpreter's doubles) may tip a value that sits on a bf16 rounding boundary, so most
      // values are equal and none is more than two bf16 ulps (of its magnitude) away.
      let equal = 0;
      b.data.forEach((v, i) => {
        const w = a.data[i]!;
        if (v === w) equal++;
        const ulp = 2 ** (Math.floor(Math.log2(Math.max(Math.abs(v), Math.abs(w), 2 ** -126))) - 7);
        expect(Math.abs(v - w), `${name}[${i}]: onnx ${v}, interp ${w}`).toBeLessThanOrEqual(2 * ulp);
      });
      expect(equal / b.data.length, name).toBeGreaterThanOrEqual(0.9);
      // Not trivially equal: unrounded f32 results would differ from the interpreter's bf16 ones.
      expect(Array.from(b.data).every(isBf16Value)).toBe(true);
    }
  });

  it("leaves the exported model in bf16; the runner's copy holds f32 and rounds where bf16 would", () => {
    const m = parseModule(MODULE, "m.lir");
    const elemTypes = (bytes: Uint8Array) => {
      const g = decodeModel(bytes).graph!;
      const casts = g.node!.filter((n) => n.opType === "Cast").map((n) => Number(n.attribute![0]!.i));
      return { inputs: g.input!.map((v) => v.type!.tensorType!.elemType), casts };
    };
    const exported = elemTypes(emitOnnx(m, { weights: unboundLayout() }).bytes);
    expect(exported.inputs).toEqual([16]);
    const run = elemTypes(emitOnnx(m, { weights: unboundLayout(), f32Boundary: true, emulateBf16: true }).bytes);
    expect(run.inputs).toEqual([1]);
    // Every Cast to bf16 is followed by one back to f32: as many of each at least.
    const toBf16 = run.casts.filter((t) => t === 16).length;
    expect(toBf16).toBeGreaterThan(5);
    expect(run.casts.filter((t) => t === 1).length).toBeGreaterThanOrEqual(toBf16);
  });

  it("runs ling-tiny in bf16 within four bf16 ulps (of the largest logit) of upstream's bf16 logits, as the interpreter does", async () => {
    const golden = readAllSafetensors(GOLDEN_FILE);
    for (const backend of ["interp", "onnx"]) {
      const file = join(dir, `tiny-${backend}.safetensors`);
      const r = await cli("run", GOLDEN_DIR, "--backend", backend, "--dtype", "bf16", "--input", GOLDEN_FILE, "--out", file);
      expect(r.code, r.stderr).toBe(0);
      const got = readAllSafetensors(file);
      for (const name of ["logits", "mtp_logits"]) {
        const ref = golden[`${name}_bf16`]!;
        let worst = 0;
        let largest = 0;
        ref.data.forEach((v, i) => {
          worst = Math.max(worst, Math.abs(v - got[name]!.data[i]!));
          largest = Math.max(largest, Math.abs(v));
        });
        // Upstream's bf16 forward rounds at the same points; sums and exponentials differ in their
        // last bits, which three layers carry to 2-2.5 ulps of the largest logit. Without the
        // rounding (f32 arithmetic, upstream's own fp32 logits) routing flips: 1.6-2.1 away.
        const ulp = 2 ** (Math.floor(Math.log2(largest)) - 7);
        expect(worst, `${backend} ${name}: max abs ${worst} against upstream's bf16 run`).toBeLessThanOrEqual(4 * ulp);
      }
    }
  });

  it("compile --target onnx --onnx-bf16 emulate writes a bf16 checkpoint's model that ONNX Runtime's CPU provider runs: run's numbers", async () => {
    const out = join(dir, "emulated");
    const c = await cli("compile", SMALL_DIR, "--target", "onnx", "--onnx-bf16", "emulate", "--out", out);
    expect(c.code, c.stderr).toBe(0);
    const g = decodeModel(readFileSync(join(out, "forward.onnx"))).graph!;
    expect(g.output!.map((v) => [v.name, v.type!.tensorType!.elemType])).toContainEqual(["present.0.key", 1]);
    const ids = readAllSafetensors(SMALL_FP8_GOLDEN)["input_ids"]!;
    const session = await createSession(readFileSync(join(out, "forward.onnx")), SMALL_DIR);
    const ort = await loadOrt();
    const res = await session.run({ input_ids: toOrt(ort, ids) });
    writeSafetensors(join(dir, "small-ids.safetensors"), { input_ids: ids });
    const r = await cli("run", SMALL_DIR, "--backend", "onnx", "--input", join(dir, "small-ids.safetensors"), "--out", join(dir, "small-run.safetensors"));
    expect(r.code, r.stderr).toBe(0);
    const ran = readAllSafetensors(join(dir, "small-run.safetensors"));
    for (const name of ["logits", "mtp_logits", "present.2.value"]) expect(maxAbsDiff(fromOrt(res[name]!, name).data, ran[name]!.data), name).toBe(0);
    // The native export of the same checkpoint is what the CPU provider cannot load.
    const n = await cli("compile", SMALL_DIR, "--target", "onnx", "--out", join(dir, "native"));
    expect(n.code, n.stderr).toBe(0);
    await expect(createSession(readFileSync(join(dir, "native", "forward.onnx")), SMALL_DIR)).rejects.toThrow(/Could not find an implementation/);
    expect((await cli("compile", SMALL_DIR, "--target", "ir", "--onnx-bf16", "emulate", "--out", join(dir, "ir"))).code).toBe(2);
  });

  it("an FP8 checkpoint with bf16 activations: each scaled projection computes in f32 and rounds once, as the interpreter does (onnx and wgsl)", async () => {
    // Dequantizing to bf16 before the MatMul (as the onnx lowering did) rounds q x s, which is no
    // bf16 value: half of the first layer's keys came out an ulp or two off.
    const out: Record<string, Record<string, Tensor>> = {};
    for (const backend of ["interp", "onnx", "wgsl"]) {
      const file = join(dir, `fp8-bf16-${backend}.safetensors`);
      const r = await cli("run", SMALL_FP8_DIR, "--backend", backend, "--dtype", "bf16", "--input", SMALL_FP8_GOLDEN, "--out", file);
      expect(r.code, r.stderr).toBe(0);
      out[backend] = readAllSafetensors(file);
    }
    for (const backend of ["onnx", "wgsl"]) {
      for (const name of ["present.0.key", "present.0.value"]) {
        const [a, b] = [out["interp"]![name]!, out[backend]![name]!];
        expect(b.dtype).toBe("bf16");
        const equal = b.data.filter((v, i) => v === a.data[i]).length;
        expect(equal / b.data.length, `${backend} ${name}`).toBeGreaterThanOrEqual(0.99);
      }
    }
  });
});
