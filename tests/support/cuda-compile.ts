/**
 * What the CUDA compile tests share: nvcc with the strict flags CI uses, the CLI with LINGC_* knobs
 * set for a call, and finding the generated kernels in an emitted model.cu.
 */
import { spawn, spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { expect } from "vitest";
import { nvccStrictFlags } from "../../backends/cuda/build-files";
import { CUDA_SM90A } from "../../ir/target";
import { cli } from "./cli";
import { SMALL_DIR } from "./paths";

export function nvcc(dir: string, file: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = spawn("nvcc", [...nvccStrictFlags(CUDA_SM90A).split(" "), "-c", "-o", `${file}.o`, file], { cwd: dir });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    p.on("error", (e) => resolve({ code: -1, out: `nvcc could not start: ${e.message} (the CUDA toolkit's nvcc must be on the PATH)` }));
    p.on("close", (code) => resolve({ code: code ?? -1, out }));
  });
}

/** nvcc compiles each file (in its folder) without an error or a warning. */
export async function expectCompiles(...files: [dir: string, file: string][]): Promise<void> {
  for (const res of await Promise.all(files.map(([d, f]) => nvcc(d, f)))) {
    expect(res.code, res.out).toBe(0);
    expect(res.out.trim(), "nvcc printed warnings").toBe("");
  }
}

/** The CLI in-process with these environment variables set for the call (the kir generators read LINGC_* knobs). */
export async function cliEnv(env: Record<string, string>, ...argv: string[]) {
  const before = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    return await cli(...argv);
  } finally {
    for (const [k, v] of Object.entries(before)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** The generated kernels of a model.cu whose names start with `name_` (each from its signature to its closing brace). */
export function kernelsNamed(src: string, name: string): string[] {
  const found: string[] = [];
  const re = new RegExp(`__global__ void __launch_bounds__\\(\\d+(?:, \\d+)?\\) ${name}_\\d+\\(`, "g");
  for (let m = re.exec(src); m; m = re.exec(src)) found.push(src.slice(m.index, src.indexOf("\n}\n", m.index)));
  expect(found.length, `no kernel ${name}`).toBeGreaterThan(0);
  return found;
}

/** `lingc compile <model> --target cuda --out <out>` with LINGC_BF16_TILE set to `tile` for the call. */
export async function compileWithBf16Tile(tile: string, model: string, out: string): Promise<{ code: number; stderr: string }> {
  process.env["LINGC_BF16_TILE"] = tile;
  try {
    return await cli("compile", model, "--target", "cuda", "--out", out);
  } finally {
    delete process.env["LINGC_BF16_TILE"];
  }
}

/** A bf16 mma.sync product instruction. */
export const BF16_MMA = /mma\.sync\.aligned\.m16n8k16\.row\.col\.f32\.bf16\.bf16\.f32/g;

/** ling-small compiled with a bf16 warp tile: its model.cu, and the one mma.sync kernel of each expert step (SwiGLU, down). */
export async function warpTiles(tile: string, out: string): Promise<{ src: string; tiles: string[] }> {
  const r = await compileWithBf16Tile(tile, SMALL_DIR, out);
  expect(r.code, r.stderr).toBe(0);
  const src = readFileSync(join(out, "model.cu"), "utf8");
  const tiles = ["k_swiglu", "k_grouped_linear"].map((name) => {
    const found = kernelsNamed(src, name).filter((k) => k.includes("mma.sync"));
    expect(found.length, name).toBe(1);
    return found[0]!;
  });
  return { src, tiles };
}

/**
 * nvcc compiles these kernels of a model.cu alone (as kernelsNamed found them), in a file of their
 * own in `dir`: for a variant whose host code is the default program's, compiled whole elsewhere.
 */
export async function expectKernelsCompile(dir: string, kernels: readonly string[]): Promise<void> {
  writeFileSync(join(dir, "kernels.cu"), `#include "lingc_runtime.h"\n\n${kernels.map((k) => `${k}\n}\n`).join("\n")}`);
  await expectCompiles([dir, "kernels.cu"]);
}

/**
 * ptxas's report (-Xptxas -v) on these kernels, compiled as expectKernelsCompile does: each kernel's
 * registers, and neither a spill nor a serialized warpgroup-MMA advisory (C7514/C7515/C7519, which
 * ptxas prints as info, not as a warning).
 */
export async function expectNoSpills(dir: string, kernels: readonly string[]): Promise<void> {
  writeFileSync(join(dir, "kernels-v.cu"), `#include "lingc_runtime.h"\n\n${kernels.map((k) => `${k}\n}\n`).join("\n")}`);
  const v = spawnSync("nvcc", [...nvccStrictFlags(CUDA_SM90A).split(" "), "-Xptxas", "-v", "-c", "-o", "kernels-v.o", "kernels-v.cu"], { cwd: dir, encoding: "utf8" });
  expect(v.status, v.stderr).toBe(0);
  expect(v.stderr.match(/Used \d+ registers/g)?.length).toBe(kernels.length);
  expect(v.stderr).not.toMatch(/C7514|C7515|C7519|[1-9]\d* bytes spill/);
}
