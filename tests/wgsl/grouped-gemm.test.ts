/**
 * The routed experts' workgroup-tiled kernel on WebGPU (backends/kernels/gen/grouped-gemm-simt.ts)
 * against the interpreter, on a routing made to reach its edges: an expert with no rows, one with
 * every token (several row tiles), one with a single row; a hidden width (40) and an expert width
 * (36) that are no multiple of the 16-wide K slices or the 32-column tiles. Above E x 32 / 2 rows
 * the host launches the tiled kernel, at or below it the pointwise group (ArtifactKernel.few): a
 * thread per output, or with the GPU kernel forms (WebGpuProfile.gpuForms, forced here by
 * LINGC_WGSL_GPU_FORMS=1 since llvmpipe is a CPU) its gemv form, lanes splitting each dot product:
 * all are run. Then, with the GPU forms, a plain linear layer with an epilogue: the gemv form at few
 * rows, workgroup tiles (backends/kernels/gen/linear-simt.ts) at many.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readFileSync, writeFileSync } from "node:fs";
import { Tensor } from "../../ir/tensor";
import { readAllSafetensors, writeSafetensors } from "../../backends/weights/safetensors";
import { compileProgram } from "../../compiler/driver/compile";
import { openSource } from "../../compiler/driver/source";
import { compileProgramWgsl } from "../../backends/wgsl/backend";
import { cli } from "../support/cli";
import { BASELINE, profileFromAdapter } from "../../ir/target/webgpu";
import { tensorDiff } from "../support/compare";
import { scratchDir } from "../support/paths";

const E = 6;
const K = 4;
const H = 40;
const F = 36;

/** Runs f with the GPU kernel forms forced on ("1") or off ("0"). */
async function withGpuForms<T>(on: "1" | "0", f: () => Promise<T>): Promise<T> {
  process.env["LINGC_WGSL_GPU_FORMS"] = on;
  try {
    return await f();
  } finally {
    delete process.env["LINGC_WGSL_GPU_FORMS"];
  }
}

function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32 - 0.5;
  };
}

/** The experts module over T tokens in dtype d, the routing weights f32 (both results combined back per token: GPU dispatch order varies). */
function experts(T: number, d: "f32" | "bf16" = "f32"): string {
  const R = T * K;
  return `module @e {
  func @e(%x: ${d}[${T}, ${H}], %ids: i32[${T}, ${K}], %wts: f32[${T}, ${K}])
      weights(
        @gate: ${d}[${E}, ${F}, ${H}],
        @up: ${d}[${E}, ${F}, ${H}],
        @down: ${d}[${E}, ${H}, ${F}]
      )
      -> (h: ${d}[${T}, ${F}], y: ${d}[${T}, ${H}]) {
    %order, %offsets, %rows = moe_dispatch(%ids) {num_experts = ${E}} : i32[${R}], i32[${E + 1}], i32[${R}]
    %p = moe_permute(%x, %order) {k = ${K}} : ${d}[${R}, ${H}]
    %g = grouped_linear(%p, @gate, %offsets) : ${d}[${R}, ${F}]
    %u = grouped_linear(%p, @up, %offsets) : ${d}[${R}, ${F}]
    %s = silu(%g) : ${d}[${R}, ${F}]
    %hr = mul(%s, %u) : ${d}[${R}, ${F}]
    %yr = grouped_linear(%hr, @down, %offsets) : ${d}[${R}, ${H}]
    %h = moe_combine(%hr, %rows, %wts) : ${d}[${T}, ${F}]
    %y = moe_combine(%yr, %rows, %wts) : ${d}[${T}, ${H}]
    return %h, %y
  }
}
`;
}

/** Expert 0 gets nothing, expert 1 every token, expert 2 token 3 only, the rest spread over 3..5. */
function routing(T: number, r: () => number): number[] {
  const ids: number[] = [];
  for (let t = 0; t < T; t++) {
    const rest = [3, 4, 5];
    const drop = Math.floor((r() + 0.5) * 3) % 3;
    const picks = [1, ...rest.filter((_, j) => j !== drop)];
    ids.push(...(t === 3 ? [1, 2, picks[1]!, picks[2]!] : [...picks, rest[drop]!]));
  }
  return ids;
}

describe("the experts' tiled kernel on WebGPU", () => {
  const dir = scratchDir("lingc-wgsl-experts-");
  const r = lcg(7);
  const w = (n: number) => Array.from({ length: n }, () => r() * 0.4);
  const weights = { gate: w(E * F * H), up: w(E * F * H), down: w(E * H * F) };
  for (const d of ["f32", "bf16"] as const) {
    writeSafetensors(join(dir, `w-${d}.safetensors`), {
      gate: Tensor.from(d, [E, F, H], weights.gate),
      up: Tensor.from(d, [E, F, H], weights.up),
      down: Tensor.from(d, [E, H, F], weights.down),
    });
  }

  it.each([
    ["a thread per output", "0"],
    ["the gemv form", "1"],
  ] as const)("compiles the expert steps to the tiled kernel with %s for few rows", async (_what, forms) => {
    writeFileSync(join(dir, "e100.lir"), experts(100));
    const kernels = await withGpuForms(forms, async () => {
      const { program } = await compileProgram({ source: await openSource(join(dir, "e100.lir")), target: "wgsl" });
      return compileProgramWgsl(program).flatMap((a) => a.kernels);
    });
    const tiled = kernels.filter((k) => k.wgsl.includes("x_tile"));
    expect(tiled.map((k) => k.fusion).sort()).toEqual(["grouped_linear", "swiglu"]);
    for (const k of tiled) {
      // Few rows: at most E x 32 / 2 - 1 = 95 (in the step's rows, T x k).
      expect(k.few?.max).toBe((E * 32) / 2 - 1);
      expect(k.few?.launch.wgsl).not.toContain("x_tile");
      if (forms === "1") expect(k.few?.launch.wgsl).toMatch(/var<workgroup> lanes_\d+/);
      else expect(k.few?.launch.wgsl).not.toContain("var<workgroup>");
      expect(k.wgsl).toContain("workgroupUniformLoad");
    }
  });

  // bf16: the gemv form reads the expert weights (even rows: 40 and 36) a word, two values, a load.
  it.each([
    ["tiled (400 rows)", 100, "0", "f32"],
    ["a thread per output (80 rows)", 20, "0", "f32"],
    ["gemv form (80 rows)", 20, "1", "f32"],
    ["gemv form, bf16 (80 rows)", 20, "1", "bf16"],
  ] as const)("%s: the interpreter's numbers", async (_what, T, forms, d) => {
    const lir = join(dir, `e${T}-${d}.lir`);
    writeFileSync(lir, experts(T, d));
    writeSafetensors(join(dir, `in${T}-${d}.safetensors`), {
      x: Tensor.from(d, [T, H], w(T * H).map((v) => v * 5)),
      ids: Tensor.from("i32", [T, K], routing(T, r)),
      wts: Tensor.from("f32", [T, K], w(T * K).map((v) => v + 0.6)),
    });
    const out: Record<string, Record<string, Tensor>> = {};
    for (const backend of ["interp", "wgsl"]) {
      const file = join(dir, `${backend}${T}-${d}.safetensors`);
      const res = await withGpuForms(forms, () => cli("run", lir, "--weights", join(dir, `w-${d}.safetensors`), "--backend", backend, "--input", join(dir, `in${T}-${d}.safetensors`), "--out", file));
      expect(res.code, res.stderr).toBe(0);
      out[backend] = readAllSafetensors(file);
    }
    if (d === "bf16") {
      const kernels = await withGpuForms(forms, async () => {
        const { program } = await compileProgram({ source: await openSource(lir), target: "wgsl" });
        return compileProgramWgsl(program).flatMap((a) => a.kernels);
      });
      // SwiGLU's gate and up (two words a step each) and the down projection (one).
      const words = kernels.filter((k) => k.few).map((k) => k.few!.launch.wgsl.match(/let w2_\d+/g)?.length ?? 0);
      expect(words.sort()).toEqual([4, 8]);
    }
    // fp32 sums in another order: within 1e-5 of the largest value; in bf16, then rounded at each op
    // as the interpreter rounds: at most one bf16 step (2^-8 relative) of the largest value.
    for (const name of ["h", "y"]) {
      const largest = Math.max(...Array.from(out["interp"]![name]!.data, Math.abs));
      expect(tensorDiff(out["wgsl"]![name]!, out["interp"]![name]!), name).toBeLessThanOrEqual(d === "f32" ? 1e-5 : 2 ** -8 * largest);
    }
  }, 120_000);
});

/**
 * A bf16 linear [O, I] with its epilogue under the GPU forms: tiles, and the gemv form for few rows.
 * `rows`: the row counts run against the interpreter; `split`: the parts a 1 KiB binding limit cuts
 * the weight into (rows each, count), run at 3 rows.
 */
function linearLayer(I: number, O: number, rows: readonly number[], split: { rows: number; count: number }) {
  const dir = scratchDir(`lingc-wgsl-gemv-${I}-`);
  const r = lcg(11);
  writeSafetensors(join(dir, "w.safetensors"), { w: Tensor.from("bf16", [O, I], Array.from({ length: O * I }, () => r())) });
  const lin = (T: number) => `module @l {
  func @l(%x: bf16[${T}, ${I}]) weights(@w: bf16[${O}, ${I}]) -> (y: f32[${T}, ${O}]) {
    %h = linear(%x, @w) : bf16[${T}, ${O}]
    %y = cast(%h) {to = f32} : f32[${T}, ${O}]
    return %y
  }
}
`;

  it("compiles a linear and its epilogue to the tiled kernel with the gemv form for up to 16 rows", async () => {
    writeFileSync(join(dir, "l5.lir"), lin(5));
    const kernels = await withGpuForms("1", async () => {
      const { program } = await compileProgram({ source: await openSource(join(dir, "l5.lir")), target: "wgsl" });
      return compileProgramWgsl(program).flatMap((a) => a.kernels);
    });
    expect(kernels.length).toBe(1);
    expect(kernels[0]!.few?.max).toBe(16);
    expect(kernels[0]!.fusion).toBe("epilogue");
    expect(kernels[0]!.wgsl).toMatch(/var<workgroup> x_tile_\d+/);
    const gemv = kernels[0]!.few!.launch.wgsl;
    expect(gemv).toMatch(/var<workgroup> lanes_\d+: array<f32, 256>/);
    // An even row length is read a word (two bf16 values) a load: 4 words a lane and step.
    expect(gemv.match(/let w2_\d+/g)?.length ?? 0).toBe(I % 2 === 0 ? 4 : 0);
  });

  it.each([...rows.map((T) => [T, []] as const), [3, ["--limit", "maxStorageBufferBindingSize=1024"]] as const])("%i rows: the interpreter's numbers %j", async (T, limit) => {
    const lir = join(dir, `l${T}.lir`);
    writeFileSync(lir, lin(T));
    writeSafetensors(join(dir, `in${T}.safetensors`), { x: Tensor.from("bf16", [T, I], Array.from({ length: T * I }, () => r() * 4)) });
    if (limit.length) {
      const c = await withGpuForms("1", () => cli("compile", lir, "--target", "wgsl", "--out", join(dir, "split"), ...limit));
      expect(c.code, c.stderr).toBe(0);
      const a = JSON.parse(readFileSync(join(dir, "split", "l.wgsl.json"), "utf8")) as { slots: { weight?: string; bf16Pairs?: boolean; parts?: { rows: number; count: number } }[] };
      expect(a.slots.find((sl) => sl.weight === "w")).toMatchObject({ bf16Pairs: true, parts: split });
    }
    const out: Record<string, Tensor> = {};
    for (const backend of ["interp", "wgsl"]) {
      const file = join(dir, `${backend}${T}.safetensors`);
      const res = await withGpuForms("1", () => cli("run", lir, "--weights", join(dir, "w.safetensors"), "--backend", backend, "--input", join(dir, `in${T}.safetensors`), "--out", file, ...(backend === "wgsl" ? limit : [])));
      expect(res.code, res.stderr).toBe(0);
      out[backend] = readAllSafetensors(file)["y"]!;
    }
    // The fp32 sum in another order, then rounded to bf16: at most one bf16 step (2^-8 relative) of the largest value.
    const largest = Math.max(...Array.from(out["interp"]!.data, Math.abs));
    expect(largest).toBeGreaterThan(1);
    expect(tensorDiff(out["wgsl"]!, out["interp"]!)).toBeLessThanOrEqual(2 ** -8 * largest);
  }, 120_000);
}

// 45 inputs (no multiple of the 32 lanes; odd: a value a load), 37 outputs (no multiple of a
// workgroup's 8 elements). 17 and 100 rows: tiles with a partial row tile; 37 columns a partial
// column tile, 45 inputs a partial K slice. The bf16 weight is held two values to a word (1665
// values: the last word half used); with 1 KiB bindings (3 rows) it is split into parts of 10 rows
// (900 bytes: whole words; 11 rows, 990, are not).
describe("a linear layer on WebGPU with the GPU kernel forms: workgroup tiles, and the gemv form for few rows", () => {
  linearLayer(45, 37, [1, 3, 16, 17, 100], { rows: 10, count: 4 });
});

// 46 inputs: the gemv form reads the weight a word (two values) a load, its last step partial
// (46 = 2 x 23 pairs); 1 KiB bindings hold 11 rows (1012 bytes) a part, so parts start at odd rows.
describe("a linear layer of an even row length on WebGPU: the gemv form's word loads", () => {
  linearLayer(46, 37, [1, 16], { rows: 11, count: 4 });
});

describe("which WebGPU profile has the GPU kernel forms", () => {
  it("not the baseline; the adapter profile of a GPU, not of a CPU rasterizer; LINGC_WGSL_GPU_FORMS overrides, and a bad value is refused; the gemv form's loads a step", async () => {
    expect(BASELINE.gpuForms).toBe(false);
    const adapter = (description: string) => ({ limits: {}, features: [], info: { description } });
    expect(profileFromAdapter(adapter("NVIDIA: 580.159.04 580.159.4.0")).gpuForms).toBe(true);
    expect(profileFromAdapter(adapter("llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)")).gpuForms).toBe(false);
    expect(profileFromAdapter(adapter("SwiftShader Device (Subzero)")).gpuForms).toBe(false);
    const lir = join(scratchDir("lingc-wgsl-forms-"), "l.lir");
    writeFileSync(lir, "module @l {\n  func @l(%x: f32[2, 4]) weights(@w: f32[3, 4]) -> (y: f32[2, 3]) {\n    %y = linear(%x, @w) : f32[2, 3]\n    return %y\n  }\n}\n");
    const kernelsWith = (forms: "1" | "0") =>
      withGpuForms(forms, async () => {
        const { program } = await compileProgram({ source: await openSource(lir), target: "wgsl" });
        return compileProgramWgsl(program).flatMap((a) => a.kernels);
      });
    expect((await kernelsWith("1"))[0]!.wgsl).toContain("x_tile");
    expect((await kernelsWith("0"))[0]!.wgsl).not.toContain("x_tile");
    process.env["LINGC_WGSL_GPU_FORMS"] = "yes";
    try {
      await expect(compileProgram({ source: await openSource(lir), target: "wgsl" })).rejects.toThrow("LINGC_WGSL_GPU_FORMS 'yes': expected 1 or 0");
    } finally {
      delete process.env["LINGC_WGSL_GPU_FORMS"];
    }
    // The gemv form's weight loads per lane and step: two a pair, 4 pairs on a GPU, 1 on a CPU adapter, or as LINGC_WGSL_GEMV_UNROLL says.
    expect(BASELINE.gemvUnroll).toBe(4);
    expect(profileFromAdapter(adapter("NVIDIA: 580.159.04 580.159.4.0")).gemvUnroll).toBe(4);
    expect(profileFromAdapter(adapter("llvmpipe: Mesa 25.0.7 (LLVM 15.0.6)")).gemvUnroll).toBe(1);
    const loads = async (unroll?: string) => {
      if (unroll) process.env["LINGC_WGSL_GEMV_UNROLL"] = unroll;
      try {
        return (await kernelsWith("1"))[0]!.few!.launch.wgsl.match(/let wb_\d+/g)?.length;
      } finally {
        delete process.env["LINGC_WGSL_GEMV_UNROLL"];
      }
    };
    expect(await loads()).toBe(8);
    expect(await loads("2")).toBe(4);
    await expect(loads("0")).rejects.toThrow("LINGC_WGSL_GEMV_UNROLL '0': expected a whole number from 1 to 8");
  });
});
