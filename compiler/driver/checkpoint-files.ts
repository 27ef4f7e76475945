/** What a checkpoint folder holds besides its weights (config, tokenizer, generation config). */
import { copyFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/** Copies the plain files of `src` into `dest`, except the weights (*.safetensors, the shard index) and `skip`. */
export function copyCheckpointExtras(src: string, dest: string, skip: readonly string[] = []): void {
  for (const f of readdirSync(src)) {
    const p = join(src, f);
    if (skip.includes(f) || f.endsWith(".safetensors") || f === "model.safetensors.index.json" || !statSync(p).isFile()) continue;
    copyFileSync(p, join(dest, f));
  }
}
