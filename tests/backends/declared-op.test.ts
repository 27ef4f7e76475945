/**
 * An elementwise op declared once (its op-table entry with a scalar formula, and its DSL entry)
 * runs on every backend with no backend code. A module with one output per op of ACTIVATIONS is
 * traced through the DSL, printed to a .lir, run through `lingc run` on interp, onnx and wgsl (each
 * within 1e-5 of the interpreter, the interpreter against the formula evaluated here), and compiled
 * for cuda with nvcc (CI has nvcc but no GPU; bench/cuda/device.sh runs it on the H200).
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ModuleTracer, op, tensor, type Tensor as DslTensor } from "../../compiler/dsl";
import { printModule } from "../../ir/print";
import { Tensor } from "../../ir/tensor";
import { CUDA_SM90A } from "../../ir/target";
import { nvccStrictFlags } from "../../backends/cuda/build-files";
import { readAllSafetensors, writeSafetensors } from "../../backends/weights/safetensors";
import { cli } from "../support/cli";
import { maxAbsDiff } from "../support/compare";
import { scratchDir } from "../support/paths";

/** The ops under test and their meaning, written here independently of the op table. */
const ACTIVATIONS: Record<string, (x: number) => number> = {
  silu: (x) => x / (1 + Math.exp(-x)),
  sigmoid: (x) => 1 / (1 + Math.exp(-x)),
  gelu: (x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3))),
};

const dir = scratchDir("lingc-declared-op-");
const N = 4;
const W = 64;

function writeModule(): string {
  const m = new ModuleTracer("acts", { model: "activations" });
  m.entry("acts", { x: tensor("f32", ["N", W]) }, ({ x }) => Object.fromEntries(Object.keys(ACTIVATIONS).map((name) => [name, (op as unknown as Record<string, (t: DslTensor) => DslTensor>)[name]!(x!)])));
  const path = join(dir, "acts.lir");
  writeFileSync(path, printModule(m.finish()));
  return path;
}

describe("ops declared once run on every backend", () => {
  const lir = writeModule();
  const xs = Array.from({ length: N * W }, (_, i) => -6 + (12 * i) / (N * W - 1));
  const input = join(dir, "x.safetensors");
  writeSafetensors(input, { x: Tensor.from("f32", [N, W], xs) });

  const run = async (backend: string) => {
    const out = join(dir, `${backend}.safetensors`);
    const r = await cli("run", lir, "--backend", backend, "--input", input, "--out", out);
    expect(r.code, r.stderr).toBe(0);
    return readAllSafetensors(out);
  };

  it("the interpreter computes each op's formula", async () => {
    const got = await run("interp");
    for (const [name, f] of Object.entries(ACTIVATIONS)) {
      expect(maxAbsDiff(got[name]!.data, xs.map((x) => Math.fround(f(x)))), name).toBeLessThanOrEqual(1e-6);
    }
  });

  it.each(["onnx", "wgsl"])("%s gives the interpreter's values within 1e-5", async (backend) => {
    const ref = await run("interp");
    const got = await run(backend);
    for (const name of Object.keys(ACTIVATIONS)) expect(maxAbsDiff(got[name]!.data, ref[name]!.data), name).toBeLessThanOrEqual(1e-5);
  });

  it("cuda compiles it with nvcc, without warnings", async () => {
    const out = join(dir, "cuda");
    const r = await cli("compile", lir, "--target", "cuda", "--out", out);
    expect(r.code, r.stderr).toBe(0);
    const nvcc = spawnSync("nvcc", [...nvccStrictFlags(CUDA_SM90A).split(" "), "-c", "-o", "model.o", "model.cu"], { cwd: out, encoding: "utf8" });
    expect(nvcc.error, "nvcc must be on the PATH").toBeUndefined();
    expect(nvcc.status, nvcc.stderr).toBe(0);
    expect(`${nvcc.stdout}${nvcc.stderr}`.trim()).toBe("");
  }, 120_000);
});
