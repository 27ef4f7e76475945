/**
 * `--backend cuda`: emits the program's CUDA sources, builds them with nvcc (cached by a hash of the
 * sources, under $LINGC_CACHE_DIR or ~/.cache/lingc), and runs the program on the GPU: `run` through
 * safetensors files, `generate` through the program's own loop, which keeps the KV cache on the GPU.
 * The program reads the weights from the checkpoint's files itself.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import { LingcError } from "../../ir/errors";
import { Tensor } from "../../ir/tensor";
import type { TensorType } from "../../ir/types";
import { readAllSafetensors, writeSafetensors } from "../weights/safetensors";
import { signatureOf, type Backend, type GraphRunner, type LoadedModel, type Program } from "../backend";
import { typedAsDeclared } from "../narrow-results";
import type { GenerateResult } from "../generation";
import { cudaProfile, emitCuda } from "./emit";
import { nvccFlags } from "./build-files";
import { runtimeKindOf } from "./library";
import { gpuCount, runProgram } from "./launch";
import { Op } from "../../ir/module";
import { templateForOp } from "../kernels/gen";

function cacheRoot(): string {
  return process.env["LINGC_CACHE_DIR"] ?? join(homedir(), ".cache", "lingc");
}

/** Where cuBLASLt's headers and library are: the toolkit's, or the nvidia-cublas Python package's. */
function cublasFlags(): { compile: string[]; link: string[] } {
  const toolkit = spawnSync("sh", ["-c", "dirname $(dirname $(readlink -f $(command -v nvcc)))"], { encoding: "utf8" }).stdout.trim();
  if (toolkit && existsSync(join(toolkit, "include", "cublasLt.h"))) return { compile: [], link: ["-lcublasLt"] };
  const py = spawnSync("python3", ["-c", "import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__))"], { encoding: "utf8" });
  const home = py.status === 0 ? py.stdout.trim() : "";
  if (home && existsSync(join(home, "include", "cublasLt.h"))) {
    const lib = ["libcublasLt.so", ...readdirSync(join(home, "lib")).filter((f) => f.startsWith("libcublasLt.so."))].find((f) => existsSync(join(home, "lib", f)));
    if (lib) return { compile: [`-I${join(home, "include")}`], link: [join(home, "lib", lib), "-Xlinker", `-rpath=${join(home, "lib")}`] };
  }
  throw new LingcError("cuBLASLt was not found (neither in the CUDA toolkit nor in the nvidia-cublas Python package)");
}

function run(cmd: string, args: string[], cwd: string): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { cwd });
    let out = "";
    p.stdout.on("data", (d) => (out += d));
    p.stderr.on("data", (d) => (out += d));
    p.on("error", (e) => resolve({ code: -1, out: e.message }));
    p.on("close", (code) => resolve({ code: code ?? -1, out }));
  });
}

/** A built program: its folder and executable, or (a pipeline) one executable per stage. */
export interface BuiltProgram {
  dir: string;
  /** lingc_model, or lingc_stage0..N-1 */
  executables: string[];
  stages: number;
}

/** Builds (or finds) the executable(s) of a program. */
export async function buildProgram(program: Program): Promise<BuiltProgram> {
  const { files } = emitCuda(program);
  const models = Object.keys(files).filter((f) => /^model(\.stage\d+)?\.cu$/.test(f)).sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const exeOf = (m: string) => (m === "model.cu" ? "lingc_model" : m.replace(/^model\.stage(\d+)\.cu$/, "lingc_stage$1"));
  const hash = createHash("sha256");
  for (const name of Object.keys(files).sort()) hash.update(name).update("\0").update(files[name]!).update("\0");
  const model = program.graphs[0]?.attrs["model"] ?? "program";
  const dir = join(cacheRoot(), "cuda", `${model.replace(/[^A-Za-z0-9_.-]/g, "_")}-${hash.digest("hex").slice(0, 16)}`);
  const built = { dir, executables: models.map((m) => join(dir, exeOf(m))), stages: models.length };
  if (built.executables.every((e) => existsSync(e))) return built;
  const nvcc = spawnSync("nvcc", ["--version"], { encoding: "utf8" });
  if (nvcc.status !== 0) throw new LingcError("the cuda backend needs nvcc (the CUDA toolkit) on the PATH");
  const build = `${dir}.build-${process.pid}`;
  mkdirSync(build, { recursive: true });
  for (const [name, text] of Object.entries(files)) writeFileSync(join(build, name), text);
  const blas = cublasFlags();
  const flags = [...nvccFlags(cudaProfile(program)).split(" "), ...blas.compile];
  const steps = await Promise.all([...models, "lingc_runtime.cu"].map((f) => run("nvcc", [...flags, "-c", "-o", `${f}.o`, f], build)));
  const links = steps.every((x) => x.code === 0) ? await Promise.all(models.map((m) => run("nvcc", [...flags, "-o", exeOf(m), `${m}.o`, "lingc_runtime.cu.o", ...blas.link, "-ldl"], build))) : [];
  const failed = [...steps, ...links].find((x) => x.code !== 0);
  if (failed) {
    const tail = failed.out.trim().split("\n").slice(-12).join("\n");
    throw new LingcError(`building the CUDA program failed (nvcc in ${build}):\n${tail}`);
  }
  rmSync(dir, { recursive: true, force: true });
  renameSync(build, dir);
  return built;
}

/** The outputs of a graph: their names, and for a scaled fp8 one its type (its scales come as `<name>.scale`). */
function runner(built: BuiltProgram, weights: string | undefined, graph: string, outputs: ReadonlyMap<string, TensorType>, profile: boolean): GraphRunner {
  return {
    async run(inputs, observe) {
      const dir = mkdtempSync(join(tmpdir(), "lingc-cuda-"));
      try {
        const inFile = join(dir, "in.safetensors");
        const outFile = join(dir, "out.safetensors");
        writeSafetensors(inFile, inputs as Record<string, Tensor>);
        const args = ["run", ...(weights ? ["--checkpoint", weights] : []), "--graph", graph, "--input", inFile, "--out", outFile];
        if (observe) args.push("--observe");
        if (profile) args.push("--profile");
        await runProgram(built, args);
        const all = readAllSafetensors(outFile);
        const result: Record<string, Tensor> = {};
        for (const [k, v] of Object.entries(all)) {
          const type = outputs.get(k);
          if (type?.quant) result[k] = new Tensor(type.dtype, v.shape, v.data, { layout: type.quant, scales: Float32Array.from(all[`${k}.scale`]!.data) });
          else if (type) result[k] = typedAsDeclared(v, type.dtype);
          if (observe) observe(k, result[k] ?? v);
        }
        return result;
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

export const cudaBackend: Backend = {
  name: "cuda",
  summary: "CUDA C++ (cuBLASLt GEMMs, generated kernels) built with nvcc, run on an NVIDIA GPU",
  target: "cuda",
  lowers: (name) => {
    const op = new Op(name, [], {}, [], "", undefined);
    return runtimeKindOf([op]) !== undefined || templateForOp(op) !== undefined;
  },
  async load(program, weights, options = {}): Promise<LoadedModel> {
    if (!hasCudaGpu()) {
      throw new LingcError("the cuda backend runs on an NVIDIA GPU and this machine has none (nvidia-smi lists no GPU); 'lingc compile --target cuda' still emits the sources");
    }
    const built = await buildProgram(program);
    const profile = options.profileKernels ?? process.env["LINGC_PROFILE"] === "1";
    const checkpointDir = weights.checkpoint?.path;
    return {
      graphs: Object.fromEntries(program.graphs.map((m) => [m.name, runner(built, checkpointDir, m.name, new Map(m.entry!.results.map((r) => [r.name!, r.value.type])), profile)])),
      signatures: Object.fromEntries(program.graphs.map((m) => [m.name, signatureOf(m)])),
      async generate(prompts: number[][], maxNew: number, opts: { draft?: "mtp" } = {}): Promise<GenerateResult> {
        const dir = mkdtempSync(join(tmpdir(), "lingc-cuda-"));
        try {
          const logitsFile = join(dir, "logits.safetensors");
          const statsFile = join(dir, "draft-stats.txt");
          const args = ["generate", ...(checkpointDir ? ["--checkpoint", checkpointDir] : []), "--prompt", prompts.map((p) => p.join(",")).join(";"), "--max-new-tokens", String(maxNew), "--logits-out", logitsFile];
          if (opts.draft) args.push("--draft", opts.draft, "--draft-stats", statsFile);
          if (profile) args.push("--profile");
          const out = await runProgram(built, args);
          const tokens = out.trim().split("\n").map((l) => (l.trim() ? l.trim().split(/\s+/).map(Number) : []));
          const stepLogits: Float32Array[][] = prompts.map(() => []);
          if (maxNew > 0 && existsSync(logitsFile)) {
            const t = readAllSafetensors(logitsFile)["step_logits"]!;
            const V = t.shape[2]!;
            prompts.forEach((_, b) => {
              for (let s = 0; s < maxNew; s++) stepLogits[b]!.push(Float32Array.from(t.data.subarray((b * maxNew + s) * V, (b * maxNew + s + 1) * V)));
            });
          }
          if (opts.draft && existsSync(statsFile)) {
            const n = readFileSync(statsFile, "utf8").trim().split(/\s+/);
            const at = (k: string) => Number(n[n.indexOf(k) + 1]);
            return { tokens, stepLogits, draft: { drafted: at("drafted"), accepted: at("accepted"), mainForwards: at("main_forwards"), draftRuns: at("draft_runs") } };
          }
          return { tokens, stepLogits };
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      },
      close: () => undefined,
    };
  },
};

/** Whether this machine can run CUDA programs (an NVIDIA GPU with its driver). */
export function hasCudaGpu(): boolean {
  return gpuCount() > 0;
}
