/**
 * WebGPU benchmark: ling-tiny (or any checkpoint) on the local adapter, fused vs unfused kernel plans
 * in one run: prefill tokens/s (one forward over a B x S prompt) and decode tokens/s (B sequences, one
 * token per step through the decode graph and its KV cache, which stays on the GPU). Each figure is
 * given as min / median / max over several timed runs after a warm-up (the first dispatch of each
 * pipeline compiles it); where the adapter has timestamp queries, also a decode step's time on the
 * GPU (its one compute pass) against its wall time, the rest being the host's; and greedy generation's
 * decode as `generate` runs it (each step launched before the last is read back, the GPU choosing the
 * tokens), from the first new token to the last.
 * Run with `npm run bench:wgsl` (options: --checkpoint DIR --batch B --prompt S[,S2...] (lengths measured
 * in turn on one loaded model) --prefill-chunk N (a prompt prefilled N tokens at a time: a forward,
 * then decode runs) --steps N --runs R
 * --target-profile baseline|adapter (compile for WebGPU's baseline limits, the default, or the adapter's);
 * --random-weights: the checkpoint folder's config.json with random weights made in memory
 * (bench/random-weights.ts), no safetensors read;
 * --fused-only skips the unfused plan; --kernels also prints the fused prefill's time per kernel, summed by kernel name, from a profiled
 * run: GPU timestamps where the adapter has them, else one submission per kernel timed on the host).
 */
import "../ir/ops";
import { Tensor } from "../ir/tensor";
import { nodeAdapter } from "../backends/wgsl/node";
import type { LoadedModel } from "../backends/backend";
import type { KernelTiming } from "../backends/wgsl/host";
import { GenerationSession, generationPlan } from "../backends/generation-session";
import { generate } from "../backends/generation";
import { loadModel } from "../compiler/driver/load";
import { openSource } from "../compiler/driver/source";
import { randomWeights } from "./random-weights";
import { resolve } from "node:path";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

const defaultCkpt = resolve("tests/data/golden/ling-tiny");
const ckpt = arg("checkpoint", defaultCkpt);
const B = Number(arg("batch", "1"));
/** Prompt lengths, measured in turn with the same loaded model ("2048,512,2048": one process, both caches). */
const prompts = arg("prompt", "64").split(",").map(Number);
if (prompts.some((x) => !Number.isInteger(x) || x < 1)) throw new Error(`--prompt takes prompt lengths, comma-separated (got '${arg("prompt", "64")}')`);
/**
 * Prefill a prompt in chunks of this many tokens (a forward, then decode runs of S tokens); 0: one
 * forward. LINGC_WGSL_PREFILL_CHUNK sets the default (device.sh's variants are environments).
 */
const prefillChunk = Number(arg("prefill-chunk", process.env["LINGC_WGSL_PREFILL_CHUNK"] ?? "0"));
if (!Number.isInteger(prefillChunk) || prefillChunk < 0) throw new Error(`--prefill-chunk takes a number of tokens (got '${prefillChunk}')`);
const steps = Number(arg("steps", "16"));
const runs = Number(arg("runs", "5"));
/** Random weights made in memory for the folder's config (no checkpoint read). */
const weights = process.argv.includes("--random-weights") ? randomWeights(1) : undefined;
/** WebGPU limits to compile for (a model whose expert stacks pass the baseline's binding limits needs the adapter's). */
const webgpuProfile = arg("target-profile", "baseline");
/** Tokens/s of each run's time, as min / median / max. */
function spread(tokens: number, ms: number[]): string {
  const rates = ms.map((t) => tokens / (t / 1000)).sort((a, b) => a - b);
  const f = (x: number) => x.toFixed(1);
  return `${f(rates[0]!)} / ${f(rates[Math.floor(rates.length / 2)]!)} / ${f(rates[rates.length - 1]!)}`;
}

async function measure(model: LoadedModel, S: number): Promise<{ prefill: string; decode: string; greedy: string; stepGpu: string }> {
  const plan = generationPlan(model.signatures);
  const V = plan.vocab;
  const decodeRunner = (model.graphs as Record<string, { lastGpuMs?: number; lastHostMs?: { encode: number; wait: number } }>)[plan.decode.name];
  const ids = Tensor.from("i64", [B, S], Array.from({ length: B * S }, (_, k) => (k * 7919) % V));
  // Prefill, then decode steps through the cache as generation runs them (on the GPU, grown in place).
  const once = async () => {
    const session = new GenerationSession(model, plan, S + steps);
    try {
      const t0 = performance.now();
      if (prefillChunk > 0 && prefillChunk < S) {
        // The first chunk through the forward graph, the rest through the decode graph after the cache.
        const part = (from: number, to: number) => Tensor.from("i64", [B, to - from], Array.from({ length: B * (to - from) }, (_, k) => ids.data[Math.floor(k / (to - from)) * S + from + (k % (to - from))]!));
        await session.prefill(part(0, prefillChunk));
        for (let from = prefillChunk; from < S; from += prefillChunk) await session.decode(part(from, Math.min(S, from + prefillChunk)));
      } else await session.prefill(ids);
      const t1 = performance.now();
      const gpu: number[] = [];
      const encode: number[] = [];
      const wait: number[] = [];
      const step: number[] = [];
      for (let s = 0; s < steps; s++) {
        const t = performance.now();
        await session.decode(Tensor.from("i64", [B, 1], Array.from({ length: B }, (_, b) => (s * 31 + b) % V)));
        step.push(performance.now() - t);
        const ms = decodeRunner?.lastGpuMs;
        if (ms !== undefined) gpu.push(ms);
        if (decodeRunner?.lastHostMs) {
          encode.push(decodeRunner.lastHostMs.encode);
          wait.push(decodeRunner.lastHostMs.wait);
        }
      }
      return { prefill: t1 - t0, decode: performance.now() - t1, gpu, encode, wait, step };
    } finally {
      session.close();
    }
  };
  // Greedy generation as `generate` runs it (on a backend that chains steps: each launched before the
  // last is read back): the decode steps' time from the first token to the last.
  // Chained (GenerateOptions.chainSteps) and step by step.
  const greedyOnce = async (chainSteps = true) => {
    let first = 0;
    await generate(model, Array.from({ length: B }, (_, b) => Array.from(ids.data.subarray(b * S, (b + 1) * S), Number)), steps + 1, {
      onToken: () => (first ||= performance.now()),
      chainSteps,
    });
    return performance.now() - first;
  };
  await once();
  await greedyOnce();
  await greedyOnce(false);
  const p: number[] = [];
  const d: number[] = [];
  const g: number[] = [];
  const gs: number[] = [];
  const gpu: number[] = [];
  const encode: number[] = [];
  const wait: number[] = [];
  const step: number[] = [];
  for (let r = 0; r < runs; r++) {
    const x = await once();
    p.push(x.prefill);
    d.push(x.decode);
    gpu.push(...x.gpu);
    encode.push(...x.encode);
    wait.push(...x.wait);
    step.push(...x.step);
    g.push(await greedyOnce());
    gs.push(await greedyOnce(false));
  }
  const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * q))]!;
  const median = (xs: number[]) => quantile(xs, 0.5);
  // The decode steps' one pass on the GPU (timestamps around it), against their wall time: the rest is
  // the host's (encoding up to the submission; waiting from there to the read-back's data).
  const host = encode.length ? `; host encode ${median(encode).toFixed(2)} ms, submit to read-back ${median(wait).toFixed(2)} ms` : "";
  // A step's wall time as the mean over a run (what tokens/s counts) and its median, 90th percentile
  // and maximum (the mean above the median: some steps take much longer than most).
  const walls = `wall ${(median(d) / steps).toFixed(2)} ms mean (a step: median ${median(step).toFixed(2)}, p90 ${quantile(step, 0.9).toFixed(2)}, max ${quantile(step, 1).toFixed(2)})`;
  const stepGpu = gpu.length ? `; decode step on the GPU ${median(gpu).toFixed(2)} ms (median of ${gpu.length}), ${walls}${host}` : "";
  return { prefill: spread(B * S, p), decode: spread(B * steps, d), greedy: `${spread(B * steps, g)}; step by step ${spread(B * steps, gs)}`, stepGpu };
}

const source = await openSource(ckpt);
const adapter = await nodeAdapter();
const chunked = prefillChunk > 0 ? `, prefilled in chunks of ${prefillChunk}` : "";
console.log(`WebGPU benchmark: ${source.label} on ${adapter.info?.description || adapter.info?.device || "the local adapter"} (batch ${B}, prompt ${prompts.join(" then ")}${chunked}, ${steps} decode steps; tokens/s as min / median / max of ${runs} runs)`);
// --fused-only: skip the unfused plan (a large checkpoint is loaded once less).
const plans = [["fused", []], ["unfused", ["all"]]] as const;
for (const [label, noFuse] of process.argv.includes("--fused-only") ? plans.slice(0, 1) : plans) {
  const { model } = await loadModel({ source, backend: "wgsl", settings: { noFuse: [...noFuse], webgpuProfile }, ...(weights ? { weights } : {}) });
  for (const S of prompts) {
    const r = await measure(model, S);
    const at = prompts.length > 1 ? ` (prompt ${S})` : "";
    console.log(`  ${label.padEnd(8)} prefill ${r.prefill.padStart(24)}   decode ${r.decode.padStart(24)}${r.stepGpu}${at}`);
    console.log(`  ${"".padEnd(8)} greedy generate's decode (steps chained on the GPU where the backend can) ${r.greedy}`);
  }
  model.close();
}

if (process.argv.includes("--kernels")) {
  const { model } = await loadModel({ source, backend: "wgsl", settings: { webgpuProfile }, options: { profileKernels: true }, ...(weights ? { weights } : {}) });
  // (At the first prompt length.)
  const S = prompts[0]!;
  try {
    const plan = generationPlan(model.signatures);
    const ids = Tensor.from("i64", [B, S], Array.from({ length: B * S }, (_, k) => (k * 7919) % plan.vocab));
    const runners = (model as { graphs?: Record<string, { lastTimings?: KernelTiming[] }> }).graphs ?? {};
    const timed = async (run: () => Promise<unknown>): Promise<KernelTiming[]> => {
      for (const g of Object.values(runners)) g.lastTimings = undefined;
      await run();
      return Object.values(runners).flatMap((g) => g.lastTimings ?? []);
    };
    let prefill: KernelTiming[] = [];
    let decode: KernelTiming[] = [];
    // The second round (the first compiles the pipelines).
    for (let r = 0; r < 2; r++) {
      const session = new GenerationSession(model, plan, S + 1);
      try {
        prefill = await timed(() => session.prefill(ids));
        decode = await timed(() => session.decode(Tensor.from("i64", [B, 1], Array.from({ length: B }, (_, b) => b % plan.vocab))));
      } finally {
        session.close();
      }
    }
    for (const [what, timings] of [["prefill", prefill], ["decode step", decode]] as const) {
      const by = new Map<string, { ms: number; n: number }>();
      for (const t of timings) {
        const e = by.get(t.name) ?? { ms: 0, n: 0 };
        e.ms += t.ms;
        e.n += 1;
        by.set(t.name, e);
      }
      const total = timings.reduce((a, t) => a + t.ms, 0);
      console.log(`  fused ${what} per kernel (${timings[0]?.clock === "gpu" ? "GPU timestamps" : "wall time, a submission per kernel"}; ${total.toFixed(1)} ms in all):`);
      for (const [name, e] of [...by].sort((a, b) => b[1].ms - a[1].ms).slice(0, 8)) console.log(`    ${e.ms.toFixed(2).padStart(9)} ms  ${String(e.n).padStart(3)} x  ${name}`);
    }
  } finally {
    model.close();
  }
}
