/**
 * Running a CUDA program: one process (lingc_model), or a pipeline of N stage programs as N
 * processes on this machine's first N GPUs, started in the torchrun convention (RANK, WORLD_SIZE,
 * LOCAL_RANK, MASTER_ADDR, MASTER_PORT) as torchrun, mpirun or srun would start them across nodes.
 * When one stage fails the others are stopped (they would wait for it forever), and its error is
 * the one reported. The last rank's stdout is the result (it writes run's outputs, prints tokens).
 */
import { spawn, spawnSync } from "node:child_process";
import { createServer } from "node:net";
import { LingcError } from "../../ir/errors";
import type { BuiltProgram } from "./backend";

/** The error a program printed (its last `lingc_model: error:` line), or its stderr's tail. */
function errorOf(stderr: string, status: number | null, signal: string | null): string {
  const line = stderr.trim().split("\n").filter((l) => l.startsWith("lingc_model: error:")).pop();
  return line?.replace(/^lingc_model: error: /, "") || stderr.trim().slice(-500) || `the CUDA program failed (exit ${status ?? signal})`;
}

function runOne(exe: string, args: string[]): string {
  const r = spawnSync(exe, args, { encoding: "utf8", maxBuffer: 1 << 30 });
  if (r.status === 3) throw new LingcError("the cuda backend needs an NVIDIA GPU, and this machine has none (no CUDA device)");
  if (r.status !== 0) throw new LingcError(errorOf(r.stderr ?? "", r.status, r.signal));
  if (r.stderr) process.stderr.write(r.stderr);
  return r.stdout;
}

/** How many GPUs nvidia-smi lists. */
export function gpuCount(): number {
  const r = spawnSync("nvidia-smi", ["-L"], { encoding: "utf8" });
  return r.status === 0 ? (r.stdout.match(/^GPU \d+:/gm) ?? []).length : 0;
}

/** A TCP port nothing listens on now (rank 0 listens there to hand out NCCL's id). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function runStages(built: BuiltProgram, args: string[]): Promise<string> {
  const n = built.stages;
  const gpus = gpuCount();
  if (gpus < n) throw new LingcError(`the program is cut into ${n} pipeline stages, one per GPU, and this machine has ${gpus} GPU(s) (use --stages ${Math.max(gpus, 1)} or fewer, or launch its stage programs across machines: see launch.sh in ${built.dir})`);
  const port = await freePort();
  const env = { ...process.env, WORLD_SIZE: String(n), MASTER_ADDR: "127.0.0.1", MASTER_PORT: String(port), NCCL_NVLS_ENABLE: process.env["NCCL_NVLS_ENABLE"] ?? "0" };
  const procs = built.executables.map((exe, k) => spawn(exe, args, { env: { ...env, RANK: String(k), LOCAL_RANK: String(k) } }));
  // The first stage to end badly on its own is the one to report (the others are then stopped:
  // they would wait for it forever; SIGKILL follows if one does not end within 10 s).
  let first = -1;
  const results = await new Promise<{ out: string; err: string; status: number | null; signal: string | null }[]>((resolve) => {
    const res = procs.map(() => ({ out: "", err: "", status: null as number | null, signal: null as string | null }));
    let left = n;
    procs.forEach((p, k) => {
      p.stdout.on("data", (d) => (res[k]!.out += d));
      p.stderr.on("data", (d) => (res[k]!.err += d));
      p.on("error", (e) => (res[k]!.err += `lingc_model: error: ${e.message}\n`));
      p.on("close", (status, signal) => {
        res[k]!.status = status;
        res[k]!.signal = signal;
        if ((status !== 0 || signal) && first < 0) {
          first = k;
          for (const q of procs) {
            if (q === p || q.exitCode !== null || q.signalCode !== null) continue;
            q.kill("SIGTERM");
            setTimeout(() => q.exitCode === null && q.signalCode === null && q.kill("SIGKILL"), 10_000).unref();
          }
        }
        if (--left === 0) resolve(res);
      });
    });
  });
  if (first >= 0) {
    const r = results[first]!;
    if (r.status === 3) throw new LingcError("the cuda backend needs an NVIDIA GPU, and this machine has none (no CUDA device)");
    throw new LingcError(`pipeline stage ${first}: ${r.signal ? `stopped by ${r.signal}${r.err.trim() ? `: ${errorOf(r.err, r.status, r.signal)}` : ""}` : errorOf(r.err, r.status, r.signal)}`);
  }
  for (const r of results) if (r.err) process.stderr.write(r.err);
  return results[n - 1]!.out;
}

/** Runs the program with `args` (one process, or one per stage); returns what it printed (the last stage's). */
export async function runProgram(built: BuiltProgram, args: string[]): Promise<string> {
  return built.stages > 1 ? runStages(built, args) : runOne(built.executables[0]!, args);
}
