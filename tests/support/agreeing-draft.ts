/**
 * A checkpoint whose MTP layer drafts exactly what its main model will pick (so speculative decoding
 * accepts every draft): from a Ling checkpoint, every attention output projection and every MLP
 * down projection zeroed (each layer passes its input through), the final norms made ones, and the
 * MTP layer's eh_proj made [I | 0]. The main model's logits at token t are then
 * lm_head(norm(embed(t))), and the MTP layer's for the token after t, lm_head(norm(norm(embed(t+1)))):
 * the main model's logits at t+1. bench/cuda/agreeing_draft.py builds the same on the GPU machine.
 */
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { readAllSafetensors, writeSafetensors } from "../../backends/weights/safetensors";
import { Tensor } from "../../ir/tensor";

export function agreeingDraftCheckpoint(from: string, to: string): string {
  const tensors = readAllSafetensors(join(from, "model.safetensors"));
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(tensors)) {
    if (name.endsWith("attention.dense.weight") || name.endsWith("down_proj.weight")) out[name] = Tensor.zeros(t.dtype, t.shape);
    else if (name === "model.norm.weight" || name.endsWith(".enorm.weight") || name.endsWith(".final_layernorm.weight")) out[name] = Tensor.from(t.dtype, t.shape, new Array(t.numel).fill(1));
    else if (name.endsWith(".eh_proj.weight")) {
      const [H, H2] = t.shape as [number, number];
      const data = new Array(H * H2).fill(0);
      for (let i = 0; i < H; i++) data[i * H2 + i] = 1;
      out[name] = Tensor.from(t.dtype, t.shape, data);
    } else out[name] = t;
  }
  mkdirSync(to, { recursive: true });
  writeSafetensors(join(to, "model.safetensors"), out);
  copyFileSync(join(from, "config.json"), join(to, "config.json"));
  return to;
}
