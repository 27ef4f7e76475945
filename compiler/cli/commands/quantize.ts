/**
 * `lingc quantize <checkpoint> --out DIR`: writes an HF FineGrainedFP8 checkpoint of a bf16/f32 one
 * (compiler/driver/fp8-checkpoint.ts) and prints each quantized tensor's health: underflow, cosine
 * to the original, worst block relative error (`--json`: the same as JSON).
 */
import { quantizeCheckpoint, type TensorHealth } from "../../driver/fp8-checkpoint";
import { flag, str } from "../args";
import type { Command } from "./command";

function table(rows: readonly TensorHealth[]): string {
  const w = Math.max(6, ...rows.map((r) => r.name.length));
  const lines = [`${"tensor".padEnd(w)}  ${"shape".padEnd(12)}  underflow      cosine  worst block rel. error`];
  for (const r of rows) lines.push(`${r.name.padEnd(w)}  ${`[${r.shape.join(", ")}]`.padEnd(12)}  ${r.underflow.toExponential(2).padStart(9)}  ${r.cosine.toFixed(6).padStart(10)}  ${r.worstBlockRelError.toExponential(3).padStart(22)}`);
  const worst = (k: keyof TensorHealth) => rows.reduce((a, r) => (r[k] as number) > (a[k] as number) ? r : a, rows[0]!);
  const lowest = rows.reduce((a, r) => (r.cosine < a.cosine ? r : a), rows[0]!);
  lines.push(
    `${rows.length} tensors; highest underflow ${worst("underflow").underflow.toExponential(2)} (${worst("underflow").name}); lowest cosine ${lowest.cosine.toFixed(6)} (${lowest.name}); worst block ${worst("worstBlockRelError").worstBlockRelError.toExponential(3)} (${worst("worstBlockRelError").name})`,
  );
  return lines.join("\n") + "\n";
}

export const quantize: Command = {
  spec: {
    name: "quantize",
    summary: "Writes an FP8 (HF FineGrainedFP8) checkpoint of a bf16 or f32 one and prints each quantized tensor's health.",
    positionals: [{ name: "checkpoint", help: "a checkpoint folder (config.json + *.safetensors)" }],
    options: [
      { name: "out", value: "DIR", help: "the folder to write (must not exist)", required: true },
      { name: "recipe", value: "NAME", help: "transformers (default: its Fp8Quantize, 448/amax per block) or ling (Ling's converter: max(amax, 1e-4)/448, power-of-two scales for attention.dense and expert gate/up)", choices: ["transformers", "ling"] },
      { name: "format", value: "FMT", help: "e4m3 (default) or e5m2", choices: ["e4m3", "e5m2"] },
      { name: "json", help: "print the health report as JSON" },
    ],
    notes: [
      "Quantized: Ling's FP8 projections (attention query_key_value and dense, the dense MLP, shared and routed experts, also in the MTP layer),",
      "in 128x128 blocks with f32 weight_scale_inv; everything else (embedding, lm_head, router, norms, eh_proj, expert_bias) is copied.",
      "Health, per tensor (Ling's FP8 safeguard metrics): underflow = nonzero values that quantize to 0; cosine(w, dequant(quant(w)));",
      "the worst block's ||w - dequant(quant(w))|| / ||w||.",
    ],
  },
  async run(args, io) {
    const json = flag(args, "json");
    let last = 0;
    const report = quantizeCheckpoint(args.positionals[0]!, str(args, "out")!, {
      recipe: (str(args, "recipe") ?? "transformers") as "transformers" | "ling",
      format: str(args, "format") === "e5m2" ? "f8e5m2" : "f8e4m3fn",
      block: 128,
      // Progress on stderr, at most once a second, and at the end.
      progress: (done, total) => {
        const now = Date.now();
        if (done === total || now - last > 1000) {
          last = now;
          io.err(`quantized ${done}/${total} tensors\n`);
        }
      },
    });
    io.out(json ? `${JSON.stringify({ checkpoint: str(args, "out"), tensors: report }, null, 2)}\n` : table(report));
    return 0;
  },
};
