/**
 * Attention's GPU forms on WebGPU (backends/kernels/gen/attention.ts; the GPU kernel forms, forced
 * here by LINGC_WGSL_GPU_FORMS=1 since llvmpipe is a CPU) against the interpreter: the blocked form
 * (many rows) and the split form (few rows: keys split over 16 workgroups a row, then merged), on
 * shapes that reach their edges: several key blocks with a partial last one and two key groups per
 * output column (d = dv = 128); columns past a thread's share and a head wider than the workgroup
 * (d = 130, dv = 300), without the causal mask; head widths no power of two and a key group count
 * that does not divide the block (d = dv = 80: three groups), in bf16 with a grouped-query ratio of 4;
 * fewer keys than splits.
 */
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { Tensor } from "../../ir/tensor";
import { readAllSafetensors, writeSafetensors } from "../../backends/weights/safetensors";
import { compileProgram } from "../../compiler/driver/compile";
import { openSource } from "../../compiler/driver/source";
import { compileProgramWgsl } from "../../backends/wgsl/backend";
import { cli } from "../support/cli";
import { tensorDiff } from "../support/compare";
import { scratchDir } from "../support/paths";

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

interface Case {
  dt: "f32" | "bf16";
  nh: number;
  nkv: number;
  S: number;
  T: number;
  d: number;
  dv: number;
  causal: boolean;
}

// Above ATTENTION_SPLIT_MAX_ROWS (64) query rows the blocked form runs, at or below it the split form.
const CASES: [string, Case][] = [
  ["blocked: d = dv = 128, 300 keys in 3 blocks", { dt: "f32", nh: 4, nkv: 2, S: 20, T: 300, d: 128, dv: 128, causal: true }],
  ["blocked: d = 130, dv = 300, no mask", { dt: "f32", nh: 2, nkv: 2, S: 40, T: 70, d: 130, dv: 300, causal: false }],
  ["split: bf16, d = dv = 80 (three key groups), 4 heads on 1 KV head", { dt: "bf16", nh: 4, nkv: 1, S: 2, T: 270, d: 80, dv: 80, causal: true }],
  ["split: 5 keys over 16 splits (most of them empty), 8 heads on 2 KV heads", { dt: "f32", nh: 8, nkv: 2, S: 1, T: 5, d: 32, dv: 32, causal: true }],
];

const module = (c: Case) => `module @a {
  func @a(%q: ${c.dt}[1, ${c.nh}, ${c.S}, ${c.d}], %k: ${c.dt}[1, ${c.nkv}, ${c.T}, ${c.d}], %v: ${c.dt}[1, ${c.nkv}, ${c.T}, ${c.dv}]) -> (o: ${c.dt}[1, ${c.nh}, ${c.S}, ${c.dv}]) {
    %o = attention(%q, %k, %v) {scale = ${(1 / Math.sqrt(c.d)).toFixed(6)}, causal = ${c.causal}} : ${c.dt}[1, ${c.nh}, ${c.S}, ${c.dv}]
    return %o
  }
}
`;

async function withGpuForms<T>(f: () => Promise<T>): Promise<T> {
  process.env["LINGC_WGSL_GPU_FORMS"] = "1";
  try {
    return await f();
  } finally {
    delete process.env["LINGC_WGSL_GPU_FORMS"];
  }
}

describe("attention's GPU forms on WebGPU", () => {
  const dir = scratchDir("lingc-wgsl-attention-");

  it("is what the GPU forms compile attention to: the blocked form, and for few rows the split form's two launches", async () => {
    writeFileSync(join(dir, "a0.lir"), module(CASES[0]![1]));
    const artifacts = await withGpuForms(async () => {
      const { program } = await compileProgram({ source: await openSource(join(dir, "a0.lir")), target: "wgsl" });
      return compileProgramWgsl(program);
    });
    const kernels = artifacts.flatMap((a) => a.kernels);
    expect(kernels.length).toBe(1);
    const k = kernels[0]!;
    expect(k.wgsl).toMatch(/var<workgroup> dot_part: array<f32, 256>/);
    expect(k.wgsl).toMatch(/var<workgroup> o_part: array<f32, 256>/);
    expect(k.few?.max).toBe(64);
    // The partial kernel: 16 workgroups a row; the merge: one a row; both bind the scratch slot.
    const partial = k.few!.launch;
    const merge = partial.then!;
    expect(merge).toBeDefined();
    const scratch = artifacts[0]!.slots.find((sl) => sl.name?.endsWith("scratch"))!;
    expect(scratch.shape).toEqual([[[64 * 16 * (128 + 2), []]]]);
    expect(partial.bindings.filter((b) => b.slot === scratch.id).map((b) => b.write)).toEqual([true]);
    expect(merge.bindings.some((b) => b.slot === scratch.id)).toBe(true);
    expect(partial.grid.per).toBe(1);
    expect(JSON.stringify(partial.grid.dim)).toBe(JSON.stringify(k.grid.dim.map(([c, syms]) => [c * 16, syms])));
  });

  it.each(CASES)("%s: the interpreter's numbers", async (name, c) => {
    const r = lcg(c.T * 31 + c.d);
    const t = (shape: number[], s: number) => Tensor.from(c.dt, shape, Array.from({ length: shape.reduce((a, b) => a * b) }, () => r() * s));
    const tag = name.replace(/[^a-z0-9]/gi, "");
    const lir = join(dir, `${tag}.lir`);
    writeFileSync(lir, module(c));
    // Large scores, so that a block's maximum moves the running one. bf16 rounds each score (the dot, then times the scale): its q and k are quarters, so that every
    // dot is exact in f32 whatever the order of its sum and rounds alike here and in the interpreter.
    const qk = (shape: number[]) => (c.dt === "bf16" ? Tensor.from(c.dt, shape, Array.from({ length: shape.reduce((a, b) => a * b) }, () => Math.round(r() * 12) / 4)) : t(shape, 4));
    const inputs = { q: qk([1, c.nh, c.S, c.d]), k: qk([1, c.nkv, c.T, c.d]), v: t([1, c.nkv, c.T, c.dv], 2) };
    writeSafetensors(join(dir, `${tag}-in.safetensors`), inputs);
    const out: Record<string, Tensor> = {};
    for (const backend of ["interp", "wgsl"]) {
      const file = join(dir, `${tag}-${backend}.safetensors`);
      const res = await withGpuForms(() => cli("run", lir, "--backend", backend, "--input", join(dir, `${tag}-in.safetensors`), "--out", file));
      expect(res.code, res.stderr).toBe(0);
      out[backend] = readAllSafetensors(file)["o"]!;
    }
    const largest = Math.max(...Array.from(out["interp"]!.data, Math.abs));
    expect(largest).toBeGreaterThan(0.1);
    // fp32 sums in another order (bf16: then rounded, so at most one bf16 step, 2^-7 relative, of the largest value).
    expect(tensorDiff(out["wgsl"]!, out["interp"]!)).toBeLessThanOrEqual(c.dt === "bf16" ? 2 ** -7 * largest : 1e-5);
  }, 120_000);
});
