/**
 * `lingc quantize`: an HF checkpoint in, an HF FineGrainedFP8 checkpoint out. The projections the
 * fp8 pass would make FP8 (Ling's list, by HF tensor name) become fp8 tensors with
 * `<name>_scale_inv` block scales, by a recipe of ir/quant.ts; every other tensor is copied as it is;
 * config.json gains its `quantization_config`; shards keep their names and contents (each scale
 * beside its weight), and an index is rewritten when there is one. The result is written to a
 * temporary folder and renamed into place, so a failure leaves nothing behind. Each quantized tensor
 * gets a health line, the metrics of Ling's FP8 safeguard (LING2.md 3.1): the fraction of nonzero
 * values that quantize to zero, the cosine between the tensor and its dequantized quantization,
 * and the worst relative error of one block.
 */
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { byteSize, type DType } from "../../ir/dtype";
import { LingcError } from "../../ir/errors";
import { dequantizeValues, quantizeValues, scaleIndexOf, type QuantRecipe } from "../../ir/quant";
import { Tensor } from "../../ir/tensor";
import type { Granularity } from "../../ir/types";
import { Checkpoint } from "../../backends/weights/checkpoint";
import { scaleNameOf } from "../../backends/weights/bind";
import { writeSafetensors } from "../../backends/weights/safetensors";
import { LING_FP8_PROJECTIONS, projectionMatcher } from "../passes/fp8";
import { copyCheckpointExtras, writeFolderAtomic } from "./checkpoint-files";

export interface QuantizeOptions {
  /** transformers (default; its Fp8Quantize) or ling (Ling's converter: max(amax, 1e-4) / 448, UE8M0 scales where it uses them). */
  recipe: "transformers" | "ling";
  format: "f8e4m3fn" | "f8e5m2";
  block: number;
  /** Called as tensors are done (for progress on long work). */
  progress?: (done: number, total: number, name: string) => void;
}

export interface TensorHealth {
  name: string;
  shape: number[];
  /** Nonzero values that became 0. */
  underflow: number;
  /** cos(w, dequant(quant(w))). */
  cosine: number;
  /** The largest ||w - dequant(quant(w))|| / ||w|| over the tensor's blocks. */
  worstBlockRelError: number;
}

/** Ling's converter gives these power-of-two (UE8M0) scales; the rest (expert down among them) plain f32 ones. */
const UE8M0 = projectionMatcher(["attention.dense", "mlp.experts.*.gate_proj", "mlp.experts.*.up_proj"]);

function health(name: string, w: Tensor, q: Float32Array, scales: Float32Array, g: Granularity): TensorHealth {
  const dq = dequantizeValues(q, w.shape, { layout: { scaleDtype: "f32", granularity: g }, scales });
  let nonzero = 0;
  let lost = 0;
  let dot = 0;
  let ww = 0;
  let qq = 0;
  const at = scaleIndexOf(w.shape, g);
  const errSq = new Float64Array(scales.length);
  const normSq = new Float64Array(scales.length);
  for (let i = 0; i < w.numel; i++) {
    const a = w.data[i]!;
    const b = dq[i]!;
    if (a !== 0) {
      nonzero++;
      if (b === 0) lost++;
    }
    dot += a * b;
    ww += a * a;
    qq += b * b;
    const k = at(i);
    errSq[k] += (a - b) * (a - b);
    normSq[k] += a * a;
  }
  let worst = 0;
  for (let k = 0; k < scales.length; k++) if (normSq[k]! > 0) worst = Math.max(worst, Math.sqrt(errSq[k]! / normSq[k]!));
  const cosine = ww === 0 && qq === 0 ? 1 : dot / Math.sqrt(ww * qq);
  return { name, shape: [...w.shape], underflow: nonzero ? lost / nonzero : 0, cosine, worstBlockRelError: worst };
}

/** The shards of a checkpoint folder: file name -> the tensors it holds, in the order it holds them. */
function shardsOf(ck: Checkpoint): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const f of ck.files) out.set(basename(f.path), [...f.entries.keys()]);
  return out;
}

export function quantizeCheckpoint(src: string, dest: string, opts: QuantizeOptions): TensorHealth[] {
  if (!existsSync(src) || !statSync(src).isDirectory()) throw new LingcError(`${src}: not a checkpoint folder`);
  const cfgPath = join(src, "config.json");
  if (!existsSync(cfgPath)) throw new LingcError(`${src}: the folder has no config.json`);
  const config = JSON.parse(readFileSync(cfgPath, "utf8")) as Record<string, unknown>;
  if (config["quantization_config"]) throw new LingcError(`${cfgPath}: the checkpoint is already quantized (it has a quantization_config)`);
  if (existsSync(dest)) throw new LingcError(`${dest} already exists; give a new folder for the quantized checkpoint`);
  const ck = Checkpoint.open(src);
  const isProjection = projectionMatcher(LING_FP8_PROJECTIONS);
  const g: Granularity = { kind: "block", rows: opts.block, cols: opts.block };
  const shards = shardsOf(ck);
  const quantized = new Set(ck.names().filter((n) => n.endsWith(".weight") && isProjection(n.replace(/\.weight$/, "")) && ck.entry(n)!.entry.shape.length === 2));
  if (!quantized.size) throw new LingcError(`${src}: no tensor is a projection lingc quantizes (${LING_FP8_PROJECTIONS.join(", ")})`);
  const report: TensorHealth[] = [];
  try {
    writeFolderAtomic(dest, "quantized checkpoint", (tmp) => {
      const weightMap: Record<string, string> = {};
      let totalBytes = 0;
      let done = 0;
      for (const [file, names] of shards) {
        const out: Record<string, Tensor> = {};
        for (const n of names) {
          const t = ck.read(n);
          if (!quantized.has(n)) {
            out[n] = t;
          } else {
            const recipe: QuantRecipe = opts.recipe === "transformers" ? "transformers" : UE8M0(n.replace(/\.weight$/, "")) ? "ling-ue8m0" : "ling";
            const { q, scales } = quantizeValues(t.data, t.shape, opts.format as DType, g, recipe);
            out[n] = new Tensor(opts.format, t.shape, q);
            const grid = [Math.ceil(t.shape[0]! / opts.block), Math.ceil(t.shape[1]! / opts.block)];
            out[scaleNameOf(n)] = new Tensor("f32", grid, scales);
            report.push(health(n, t, q, scales, g));
            opts.progress?.(++done, quantized.size, n);
          }
        }
        for (const [n, t] of Object.entries(out)) {
          weightMap[n] = file;
          totalBytes += t.numel * byteSize(t.dtype);
        }
        writeSafetensors(join(tmp, file), out, { format: "pt" });
      }
      if (existsSync(join(src, "model.safetensors.index.json"))) {
        writeFileSync(join(tmp, "model.safetensors.index.json"), `${JSON.stringify({ metadata: { total_size: totalBytes }, weight_map: weightMap }, null, 2)}\n`);
      }
      const fmt = opts.format === "f8e4m3fn" ? "e4m3" : "e5m2";
      config["quantization_config"] = { quant_method: "fp8", fmt, activation_scheme: "dynamic", weight_block_size: [opts.block, opts.block] };
      writeFileSync(join(tmp, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
      // What else the folder holds (tokenizer, generation config) comes along unchanged.
      copyCheckpointExtras(src, tmp, ["config.json"]);
    });
  } finally {
    ck.close();
  }
  return report;
}
