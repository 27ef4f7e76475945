/**
 * The predicted activation memory of a model's train graph on the CUDA host (storage from first
 * write to last use: backends/frames-memory.ts) for a pass pipeline, at micro-batch B and sequence
 * S: the peak of live bytes and the bytes of the results (losses, gradients, counts) at the end.
 * bench/cuda/device.sh trainmem prints it next to the measured peak of the same build.
 * Run: node dist/bench-train-memory.mjs --model DIR [--passes LIST] [--batch B] [--seq S]
 */
import "../ir/ops";
import { openSource } from "../compiler/driver/source";
import { compileProgram } from "../compiler/driver/compile";
import { cudaMemoryPrediction } from "../backends/cuda/emit";

function arg(name: string, dflt: string | undefined): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : dflt;
}

const model = arg("model", undefined);
if (!model) throw new Error("--model DIR is required");
const passes = arg("passes", undefined);
const sizes = new Map([
  ["B", Number(arg("batch", "1"))],
  ["S", Number(arg("seq", "4096"))],
]);
const source = await openSource(model);
const { program, timings } = await compileProgram({ source, target: "cuda", passes, graphs: ["train"] });
const m = program.graphs[0]!;
const { peak, end } = cudaMemoryPrediction(program, m, sizes);
const recompute = timings.find((t) => t.name === "recompute");
console.log(JSON.stringify({ model, passes: passes ?? "(default)", batch: sizes.get("B"), seq: sizes.get("S"), predicted_peak_bytes: peak, predicted_output_bytes: end, predicted_activation_bytes: peak - end, recompute_ms: recompute?.ms }));
