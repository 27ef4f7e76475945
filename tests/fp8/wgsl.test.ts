/**
 * FP8 weights on WebGPU take one byte per value (packed four to a word, decoded in the kernels) plus
 * their f32 block scales; every other weight four bytes. `lingc compile --target wgsl` reports it.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { cli } from "../support/cli";
import { tensorDiff } from "../support/compare";
import { scratchDir, SMALL_DIR, SMALL_FP8_DIR, SMALL_FP8_GOLDEN } from "../support/paths";

describe("FP8 weights on the GPU (wgsl)", () => {
  const dir = scratchDir("lingc-fp8-wgsl-");

  it("take one byte per fp8 value plus the scales (bf16 weights two), and compile reports it", async () => {
    const r = await cli("compile", SMALL_FP8_DIR, "--target", "wgsl", "--out", dir);
    expect(r.code, r.stderr).toBe(0);
    const ck = readAllSafetensors(join(SMALL_FP8_DIR, "model.safetensors"));
    // fp8 codes a byte each, bf16 weights two bytes (two to a word), the scales f32.
    const want = Object.values(ck).reduce((sum, t) => sum + t.numel * (t.dtype === "f8e4m3fn" ? 1 : t.dtype === "bf16" ? 2 : 4), 0);
    const a = JSON.parse(readFileSync(join(dir, "forward.wgsl.json"), "utf8")) as { weightBytes: number; slots: { packed?: boolean }[] };
    expect(a.weightBytes).toBe(want);
    expect(a.slots.filter((s) => s.packed).length).toBeGreaterThan(0);
    expect(r.stderr).toContain(`forward.wgsl.json (weights on the GPU: ${(want / 1e6).toFixed(2)} MB)`);
  });

  it("over the binding size limit, are split into parts of whole words and still give upstream's W8A16 logits", async () => {
    // 256 KB bindings: each expert stack (16 x 128 x 256 codes, 512 KB) takes two; a SwiGLU kernel
    // then binds 10 buffers, so the per-stage count is raised too (two overrides in one --limit).
    const out = join(dir, "split.safetensors");
    const limit = ["--limit", "maxStorageBufferBindingSize=262144,maxStorageBuffersPerShaderStage=16"];
    const c = await cli("compile", SMALL_FP8_DIR, "--target", "wgsl", "--out", join(dir, "split"), ...limit);
    expect(c.code, c.stderr).toBe(0);
    const a = JSON.parse(readFileSync(join(dir, "split", "forward.wgsl.json"), "utf8")) as { slots: { packed?: boolean; parts?: { count: number } }[] };
    expect(a.slots.filter((s) => s.packed && (s.parts?.count ?? 1) > 1).length).toBeGreaterThan(0);
    const r = await cli("run", SMALL_FP8_DIR, "--backend", "wgsl", "--activation-scheme", "none", ...limit, "--input", SMALL_FP8_GOLDEN, "--out", out);
    expect(r.code, r.stderr).toBe(0);
    const got = readAllSafetensors(out);
    const want = readAllSafetensors(SMALL_FP8_GOLDEN);
    expect(tensorDiff(got["logits"]!, want["logits_w8a16"]!)).toBeLessThan(1e-4);
    expect(tensorDiff(got["mtp_logits"]!, want["mtp_logits_w8a16"]!)).toBeLessThan(1e-4);
  }, 120_000);

  it("quantized at load, the weights' quantize kernels run once when the graph loads, not every run", async () => {
    const r = await cli("compile", SMALL_DIR, "--quantize", "fp8", "--target", "wgsl", "--out", join(dir, "atload"));
    expect(r.code, r.stderr).toBe(0);
    type K = { fusion: string; atLoad?: boolean; bindings: { slot: number; write: boolean }[] };
    const a = JSON.parse(readFileSync(join(dir, "atload", "forward.wgsl.json"), "utf8")) as { kernels: K[]; slots: { id: number; source: string }[]; inputs: { slot: number }[] };
    const weightQuantize = a.kernels.filter((k) => k.fusion === "quantize" && k.bindings.some((b) => !b.write && a.slots[b.slot]!.source === "weight"));
    expect(weightQuantize.length).toBeGreaterThan(0);
    for (const k of weightQuantize) expect(k.atLoad).toBe(true);
    // Nothing that reads the graph's input runs at load.
    const input = new Set(a.inputs.map((i) => i.slot));
    for (const k of a.kernels.filter((x) => x.atLoad)) expect(k.bindings.some((b) => input.has(b.slot))).toBe(false);
  });

  it("an RMSNorm with its activation quantize fused is one kernel that writes the same codes and scales as the two unfused kernels", async () => {
    const lir = join(dir, "norm-q.lir");
    writeFileSync(
      lir,
      `module @m {
  func @m(%h: f32[T, 384], %r: f32[T, 384], %w: f32[384]) -> (y: f32[T, 384], q: f8e4m3fn[T, 384] scale(f32, block(1, 128))) {
    %s = add(%h, %r) : f32[T, 384]
    %n = rms_norm(%s, %w) {eps = 1e-6} : f32[T, 384]
    %q = quantize(%n) {to = f8e4m3fn, block = [1, 128], recipe = "dynamic"} : f8e4m3fn[T, 384] scale(f32, block(1, 128))
    return %s, %q
  }
}
`,
    );
    const init = await cli("init", lir, "--weights", join(dir, "nq-w.safetensors"), "--inputs", join(dir, "nq-in.safetensors"), "--dims", "T=37", "--seed", "5");
    expect(init.code, init.stderr).toBe(0);
    const c = await cli("compile", lir, "--target", "wgsl", "--out", join(dir, "nq"));
    expect(c.code, c.stderr).toBe(0);
    const a = JSON.parse(readFileSync(join(dir, "nq", "m.wgsl.json"), "utf8")) as { kernels: { fusion: string }[] };
    expect(a.kernels.map((k) => k.fusion)).toEqual(["residual_norm"]);
    const outs: Record<string, ReturnType<typeof readAllSafetensors>> = {};
    for (const [name, extra] of [["fused", ["--backend", "wgsl"]], ["unfused", ["--backend", "wgsl", "--no-fuse", "quantize"]], ["interp", ["--backend", "interp"]]] as const) {
      const r = await cli("run", lir, ...extra, "--input", join(dir, "nq-in.safetensors"), "--out", join(dir, `nq-${name}.safetensors`));
      expect(r.code, r.stderr).toBe(0);
      outs[name] = readAllSafetensors(join(dir, `nq-${name}.safetensors`));
    }
    for (const name of ["q", "q.scale", "y"]) {
      expect(outs["fused"]![name], name).toBeDefined();
      expect(tensorDiff(outs["fused"]![name]!, outs["unfused"]![name]!), name).toBe(0);
    }
    // Against the interpreter the codes agree; a scale may differ in its last bits (WGSL's
    // inverseSqrt and division are not correctly rounded), with or without the fusion.
    expect(tensorDiff(outs["fused"]!["q"]!, outs["interp"]!["q"]!)).toBe(0);
  });

  it("e5m2 (the fp8 pass's other format, weights and activations quantized) runs on WebGPU with the interpreter's numbers", async () => {
    // The target's pipeline with e5m2 for e4m3. Its rounding kernel did not compile until 2026-12-04.
    const passes = "fp8{format=e5m2,weight-block=128,activations=dynamic,weights=quantize,gather=after},cse,dce,fusion{profile=webgpu-baseline}";
    const out: Record<string, ReturnType<typeof readAllSafetensors>> = {};
    for (const backend of ["interp", "wgsl"]) {
      const file = join(dir, `e5m2-${backend}.safetensors`);
      const r = await cli("run", SMALL_DIR, "--backend", backend, "--dtype", "f32", "--passes", passes, "--input", SMALL_FP8_GOLDEN, "--out", file);
      expect(r.code, r.stderr).toBe(0);
      out[backend] = readAllSafetensors(file);
    }
    for (const name of ["logits", "mtp_logits"]) expect(tensorDiff(out["wgsl"]![name]!, out["interp"]![name]!), name).toBeLessThanOrEqual(1e-4);
    // Not the unquantized model: e5m2's two mantissa bits move the logits well past that.
    const plain = readAllSafetensors(SMALL_FP8_GOLDEN)["logits_unquantized"]!;
    expect(tensorDiff(out["wgsl"]!["logits"]!, plain)).toBeGreaterThan(1e-2);
  });
});
