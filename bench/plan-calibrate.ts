/**
 * Calibrates the plan's cost model (compiler/passes/stages-cost.ts) from a measured per-kernel
 * profile: the roofline predicts each op at the device's peak rates; lingc's kernels reach a
 * fraction of that, per kind of op. This reads a prefill profile of `lingc_model bench --profile`
 * (per-kernel times by label), sums the measured time of each kind (attention kernels, the routed
 * experts' matmuls, dense linears, everything else) and the roofline time the op table predicts for
 * the same ops on each side of the roofline (FLOPs at the peak rate, bytes at the peak bandwidth),
 * and fits per kind a compute fraction and a memory fraction (the tightest that no profile's time
 * contradicts): what `DeviceRates.achieved` records. It prints, per profile, the measured,
 * calibrated and roofline times.
 *
 *   node dist/bench-plan-calibrate.mjs <model> <profile.txt>...
 */
import "../ir/ops";
import { readFileSync } from "node:fs";
import type { Func, Module, Op } from "../ir/module";
import { CUDA_SM90A, type DeviceRates } from "../ir/target/cuda";
import { opSeconds } from "../compiler/passes/stages-cost";
import { withDefaultSizes } from "../compiler/passes/stages-units";
import { loadTimeOps } from "../ir/analysis";
import { openSource } from "../compiler/driver/source";

/** The kinds the fractions are kept for (op names), the rest being `default`. */
const KINDS = ["attention", "grouped_linear", "linear"] as const;
type Kind = (typeof KINDS)[number] | "default";

/** A kernel label's kind: the fused attention, the routed experts (SwiGLU step, down projection), a dense linear. */
function kindOfLabel(label: string): Kind {
  const name = label.replace(/ \(.*$/, "");
  if (/\.attention$/.test(name)) return "attention";
  if (/\.swiglu(\.\d+)?$/.test(name) || /: grouped_linear$/.test(name)) return "grouped_linear";
  if (/: linear$/.test(name)) return "linear";
  return "default";
}

/** The first prefill section of a profile: its shape, runs and milliseconds per kind (per run). */
function readProfile(path: string): { B: number; S: number; ms: Map<Kind, number>; total: number } {
  const lines = readFileSync(path, "utf8").split("\n");
  const head = lines.findIndex((l) => /^prefill \d+x\d+, \d+ run\(s\)/.test(l));
  if (head < 0) throw new Error(`${path}: no 'prefill BxS, N run(s): per-kernel times' section`);
  const [, b, s, runs] = /^prefill (\d+)x(\d+), (\d+) run/.exec(lines[head]!)!;
  const ms = new Map<Kind, number>();
  let total = 0;
  for (const l of lines.slice(head + 1)) {
    const m = /^\s+([\d.]+) ms\s+\d+ x\s+(.*)$/.exec(l);
    if (!m) break;
    const t = Number(m[1]) / Number(runs);
    const k = kindOfLabel(m[2]!);
    ms.set(k, (ms.get(k) ?? 0) + t);
    total += t;
  }
  return { B: Number(b), S: Number(s), ms, total };
}

/** Per kind of op, one forward at these sizes: the FLOPs side and the bytes side of the roofline (ms), and the predicted time (ms) at `rates`. */
function sides(m: Module, sizes: ReadonlyMap<string, number>, rates: DeviceRates): Map<Kind, { compute: number; memory: number; predicted: number }> {
  const out = new Map<Kind, { compute: number; memory: number; predicted: number }>();
  const onlyCompute: DeviceRates = { ...rates, memoryBandwidth: Infinity, achieved: undefined };
  const onlyMemory: DeviceRates = { ...rates, gemmFlops: {}, simtFlops: Infinity, achieved: undefined };
  const add = (op: Op) => {
    const k: Kind = (KINDS as readonly string[]).includes(op.opName) ? (op.opName as Kind) : "default";
    const e = out.get(k) ?? { compute: 0, memory: 0, predicted: 0 };
    e.compute += opSeconds(op, sizes, onlyCompute).s * 1e3;
    e.memory += opSeconds(op, sizes, onlyMemory).s * 1e3;
    e.predicted += opSeconds(op, sizes, rates).s * 1e3;
    out.set(k, e);
  };
  const walk = (f: Func) => {
    const atLoad = loadTimeOps(f);
    for (const op of f.body) {
      if (atLoad.has(op)) continue;
      if (op.opName === "call") walk(m.getFunc(op.callee!)!);
      else add(op);
    }
  };
  walk(m.entry!);
  return out;
}

const total = (x: Map<Kind, { predicted: number }>) => [...x.values()].reduce((a, b) => a + b.predicted, 0);

const positional = process.argv.slice(2).filter((a) => !a.startsWith("--"));
const [modelPath, ...profilePaths] = positional;
if (!modelPath || !profilePaths.length) throw new Error("usage: node dist/bench-plan-calibrate.mjs <model> <profile.txt>...");
const m = (await openSource(modelPath)).module("forward");
const peak: DeviceRates = { ...CUDA_SM90A.rates, achieved: undefined };
const profiles = profilePaths.map((path) => {
  const p = readProfile(path);
  return { path, ...p, sides: sides(m, withDefaultSizes(m, new Map([["B", p.B], ["S", p.S]])), peak) };
});
// Per kind, a measured time t is at least each side at its fraction (t >= FLOPs side / compute and
// t >= bytes side / memory), so the tightest fractions are the largest side / t over the profiles:
// the calibrated time never exceeds a measured one and meets it on the profile that sets each side.
// (With as many profiles as fractions it fits them exactly: a shape left out checks it.)
const achieved: Record<string, { compute: number; memory: number }> = {};
for (const k of [...KINDS, "default"] as Kind[]) {
  let compute = 0;
  let memory = 0;
  for (const p of profiles) {
    const sd = p.sides.get(k);
    const t = p.ms.get(k) ?? 0;
    if (!sd || t <= 0) continue;
    compute = Math.max(compute, sd.compute / t);
    memory = Math.max(memory, sd.memory / t);
  }
  if (compute > 0 && memory > 0) achieved[k] = { compute: Number(compute.toPrecision(3)), memory: Number(memory.toPrecision(3)) };
}
const calibrated: DeviceRates = { ...peak, achieved };
for (const p of profiles) {
  const cal = sides(m, withDefaultSizes(m, new Map([["B", p.B], ["S", p.S]])), calibrated);
  console.log(`${modelPath}, prefill ${p.B}x${p.S} (${p.path}), per forward:`);
  for (const k of [...KINDS, "default"] as Kind[]) {
    const sd = p.sides.get(k);
    if (!sd) continue;
    console.log(`  ${k.padEnd(15)} roofline FLOPs ${sd.compute.toFixed(2).padStart(7)} ms, bytes ${sd.memory.toFixed(2).padStart(7)} ms   measured ${(p.ms.get(k) ?? 0).toFixed(2).padStart(7)} ms   calibrated ${cal.get(k)!.predicted.toFixed(2).padStart(7)} ms`);
  }
  console.log(`  total: measured ${p.total.toFixed(2)} ms, calibrated ${total(cal).toFixed(2)} ms, roofline ${total(p.sides).toFixed(2)} ms`);
}
console.log(`achieved: ${JSON.stringify(achieved)}`);
