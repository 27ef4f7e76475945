/**
 * `--fp8-gather before` (the fp8 pass's gather=before): the routed experts' inputs are quantized as
 * tokens and their codes gathered with their scale rows (CUDA's default), where `after` (the other
 * targets' default) quantizes the gathered rows. A row's 1 x 128 groups are its own, so the codes are the same: every backend's outputs are
 * bit for bit its outputs without the option (CUDA's kernels: tests/cuda/simulate.test.ts and the
 * compile test below).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readAllSafetensors, writeSafetensors } from "../../backends/weights/safetensors";
import { Tensor } from "../../ir/tensor";
import { cli } from "../support/cli";
import { expectKernelsCompile, expectNoSpills, kernelsNamed } from "../support/cuda-compile";
import { scratchDir, SMALL_FP8_DIR } from "../support/paths";

describe("lingc --fp8-gather", () => {
  const dir = scratchDir("lingc-fp8-gather-");
  const ids = join(dir, "ids.safetensors");
  writeSafetensors(ids, { input_ids: Tensor.from("i64", [2, 7], [5, 17, 200, 33, 1000, 4, 9, 12, 700, 3, 3, 88, 150, 61]) });

  it.each([
    ["interp", []],
    ["onnx", []],
    // (The baseline profile's 8 storage buffers a stage are one too few for the fused experts'
    // gathered codes, their scales, the two weights with theirs, the order, offsets and result.)
    ["wgsl", ["--target-profile", "adapter"]],
  ] as const)("%s: the W8A8 outputs of ling-small-fp8 are bit for bit those without it", async (backend, extra) => {
    const outs: Record<string, Record<string, Tensor>> = {};
    for (const g of ["after", "before"]) {
      const out = join(dir, `${backend}-${g}.safetensors`);
      const r = await cli("run", SMALL_FP8_DIR, "--backend", backend, ...extra, "--input", ids, "--fp8-gather", g, "--out", out);
      expect(r.code, r.stderr).toBe(0);
      outs[g] = readAllSafetensors(out);
    }
    expect(Object.keys(outs["before"]!).sort()).toEqual(Object.keys(outs["after"]!).sort());
    for (const [name, t] of Object.entries(outs["after"]!)) expect(Array.from(outs["before"]![name]!.data), name).toEqual(Array.from(t.data));
  }, 120_000);

  it("the IR: one quantize of the tokens, their codes gathered (with their scale rows) for the routed experts", async () => {
    const r = await cli("compile", SMALL_FP8_DIR, "--target", "ir", "--fp8-gather", "before", "--out", join(dir, "ir"));
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(join(dir, "ir", "forward.lir"), "utf8");
    expect(text).toMatch(/= moe_permute\(%\d+, %\d+\) \{k = 4\} : f8e4m3fn\[B\*S\*4, 256\] scale\(f32, block\(1, 128\)\)/);
    expect(text).not.toMatch(/= quantize\(%\d+\) [^\n]*: f8e4m3fn\[B\*S\*4, 256\]/);
    // The tokens' codes are the shared expert's (one quantize of the normalized [B, S, H] rows a MoE
    // layer), reshaped to [B*S, H] for the gather.
    const moe = text.slice(text.indexOf("func @moe_layer"), text.indexOf("func @mtp_layer"));
    expect(moe.match(/= quantize\(%\d+\) [^\n]*: f8e4m3fn\[B, S, 256\]/g)).toHaveLength(3); // the QKV input, the attention output, the MLP's input
    expect(moe).toMatch(/= reshape\(%\d+\) \{shape = \[B\*S, 256\]\} : f8e4m3fn\[B\*S, 256\] scale\(f32, block\(1, 128\)\)/);
  });

  it("CUDA: the gathered codes' SwiGLU step keeps its dispatch (the by-row GEMV for few rows, the warpgroup tile for more), and its kernels compile unspilled", async () => {
    const r = await cli("compile", SMALL_FP8_DIR, "--target", "cuda", "--fp8-gather", "before", "--out", join(dir, "cuda"));
    expect(r.code, r.stderr).toBe(0);
    const src = readFileSync(join(dir, "cuda", "model.cu"), "utf8");
    expect(src).toMatch(/if \(\(\(4L\*B\*S\)\) <= \(4L\)\) \{ \{ const long n_ = [^}]*c\.launch\(k_swiglu_\d+/);
    const swiglu = kernelsNamed(src, "k_swiglu");
    const tiles = swiglu.filter((k) => k.includes("wgmma.mma_async"));
    expect(tiles.length).toBeGreaterThan(0);
    await Promise.all([expectKernelsCompile(join(dir, "cuda"), swiglu), expectNoSpills(join(dir, "cuda"), tiles)]);
  }, 300_000);

  it("a gather of scaled codes left on its own: the interpreter and ONNX run it (codes and scale rows gathered, equal); the GPU targets refuse it, naming the line, since only a quantize writes a scale grid there", async () => {
    const lir = join(dir, "g.lir");
    writeFileSync(lir, `module @g {
  func @g(%x: f32[4, 256], %order: i32[8]) -> (q: f8e4m3fn[8, 256] scale(f32, block(1, 128))) {
    %0 = quantize(%x) {to = f8e4m3fn, block = [1, 128], recipe = "dynamic"} : f8e4m3fn[4, 256] scale(f32, block(1, 128))
    %1 = moe_permute(%0, %order) {k = 2} : f8e4m3fn[8, 256] scale(f32, block(1, 128))
    return %1
  }
}
`);
    const x = Tensor.from("f32", [4, 256], Array.from({ length: 1024 }, (_, j) => Math.sin(j * 0.37) * (1 + (j % 7))));
    writeSafetensors(join(dir, "g-in.safetensors"), { x, order: Tensor.from("i32", [8], [6, 1, 3, 0, 7, 2, 5, 4]) });
    const outs: Record<string, Record<string, Tensor>> = {};
    for (const backend of ["interp", "onnx"]) {
      const r = await cli("run", lir, "--backend", backend, "--input", join(dir, "g-in.safetensors"), "--out", join(dir, `g-${backend}.safetensors`));
      expect(r.code, r.stderr).toBe(0);
      outs[backend] = readAllSafetensors(join(dir, `g-${backend}.safetensors`));
    }
    const { q, "q.scale": s } = outs["interp"]!;
    // Row r is token order[r] / 2's: rows 0 and 1 are token 3 and token 0.
    expect(Array.from(s!.data.slice(0, 2))).not.toEqual(Array.from(s!.data.slice(2, 4)));
    expect(Array.from(outs["onnx"]!["q"]!.data)).toEqual(Array.from(q!.data));
    expect(Array.from(outs["onnx"]!["q.scale"]!.data)).toEqual(Array.from(s!.data));
    for (const target of ["cuda", "wgsl"]) {
      const r = await cli("compile", lir, "--target", target, "--out", join(dir, `g-${target}`));
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(/g\.lir:4:5: no GPU kernel writes the scaled fp8 value made by 'moe_permute' \(f8e4m3fn\[8, 256\] scale\(f32, block\(1, 128\)\)\) except a quantize/);
    }
  });

  it("--print-pipeline of an FP8 checkpoint shows its fp8 pass with the target's default: before on CUDA, after elsewhere; the option overrides it", async () => {
    const pipeline = async (...extra: string[]) => {
      const r = await cli("compile", SMALL_FP8_DIR, "--print-pipeline", ...extra);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout.trim();
    };
    expect(await pipeline("--target", "cuda")).toMatch(/^fp8\{format=e4m3,weight-block=128,activations=dynamic,weights=stored,gather=before\},castlinear,/);
    expect(await pipeline("--target", "wgsl")).toMatch(/^fp8\{[^}]*,gather=after\},cse,/);
    expect(await pipeline("--target", "onnx")).toMatch(/^fp8\{[^}]*,gather=after\},cse,/);
    expect(await pipeline("--target", "cuda", "--fp8-gather", "after")).toMatch(/^fp8\{[^}]*,gather=after\}/);
    // Weight-only: no activations to place.
    expect(await pipeline("--target", "cuda", "--activation-scheme", "none")).toMatch(/^fp8\{format=e4m3,weight-block=128,activations=none,weights=stored\},/);
  });

  it("CUDA, FP8 Ling-mini: the routed experts read the shared expert's codes (quantized inside residual_norm), so a decode MoE layer has one step fewer (17, not 18); on CUDA that is the default", async () => {
    const steps = async (extra: string[]) => {
      const out = join(dir, `mini-${extra.join("-") || "default"}`);
      const r = await cli("compile", "bench/cuda/ling-mini-2.0-no-mtp", "--target", "cuda", "--quantize", "fp8", "--activation-scheme", "dynamic", "--dtype", "bf16", ...extra, "--out", out);
      expect(r.code, r.stderr).toBe(0);
      const src = readFileSync(join(out, "model.cu"), "utf8");
      const body = src.slice(src.indexOf("static void decode__moe_layer_run("), src.indexOf("\n}\n", src.indexOf("static void decode__moe_layer_run(")));
      // cuBLASLt's SwiGLU (the shared expert's at more rows) takes its activation scales K-block-major
      // without a transposing pass (its third argument), also where the routed experts read them.
      const layouts = [...body.matchAll(/c\.gemm_fp8_swiglu\(b \+ \d+, b \+ \d+, (true|false),/g)].map((m) => m[1]);
      expect(layouts.length, extra.join(" ")).toBeGreaterThan(0);
      expect(new Set(layouts), extra.join(" ")).toEqual(new Set(["true"]));
      return body.match(/^ {2}\/\/ \[\d+\] /gm)?.length;
    };
    expect(await steps(["--fp8-gather", "after"])).toBe(18);
    expect(await steps(["--fp8-gather", "before"])).toBe(17);
    expect(await steps([])).toBe(17);
  }, 120_000);

  it("WebGPU's baseline profile: the fused experts over gathered codes need one storage buffer more than its 8, and the error says what to do", async () => {
    const r = await cli("run", SMALL_FP8_DIR, "--backend", "wgsl", "--input", ids, "--fp8-gather", "before", "--out", join(dir, "w.safetensors"));
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/needs 9 storage buffers, over maxStorageBuffersPerShaderStage = 8 \(profile webgpu-baseline\); the experts here read gathered fp8 codes and their scales \(--fp8-gather before\): --fp8-gather after, or a profile with more \(--target-profile adapter\)/);
  });

  it("is refused where it places nothing: a model without FP8 projections, or weight-only FP8", async () => {
    const plain = await cli("run", "ling-tiny", "--backend", "interp", "--fp8-gather", "before", "--input", ids, "--out", join(dir, "x.safetensors"));
    expect(plain.code).not.toBe(0);
    expect(plain.stderr).toMatch(/--fp8-gather applies to FP8 models/);
    const w8a16 = await cli("run", SMALL_FP8_DIR, "--backend", "interp", "--activation-scheme", "none", "--fp8-gather", "before", "--input", ids, "--out", join(dir, "y.safetensors"));
    expect(w8a16.code).not.toBe(0);
    expect(w8a16.stderr).toMatch(/--fp8-gather places the activations' quantization; with --activation-scheme none there is none/);
  });
});
