/** What a checkpoint folder holds besides its weights (config, tokenizer, generation config). */
import { copyFileSync, existsSync, mkdirSync, readdirSync, renameSync, rmSync, statSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import { LingcError } from "../../ir/errors";

/** Copies the plain files of `src` into `dest`, except the weights (*.safetensors, the shard index) and `skip`. */
export function copyCheckpointExtras(src: string, dest: string, skip: readonly string[] = []): void {
  for (const f of readdirSync(src)) {
    const p = join(src, f);
    if (skip.includes(f) || f.endsWith(".safetensors") || f === "model.safetensors.index.json" || !statSync(p).isFile()) continue;
    copyFileSync(p, join(dest, f));
  }
}

/**
 * Makes the new folder `dest` by filling a temporary folder beside it (`fill` writes into the path
 * it is given) and renaming it into place: a failure leaves neither `dest` nor the temporary folder.
 * `what` names the folder in the refusal when `dest` exists.
 */
export function writeFolderAtomic(dest: string, what: string, fill: (tmp: string) => void): void {
  if (existsSync(dest)) throw new LingcError(`${dest} already exists; give a new folder for the ${what}`);
  const tmp = join(dirname(resolve(dest)), `.${basename(dest)}.tmp-${process.pid}`);
  try {
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp, { recursive: true });
    fill(tmp);
    renameSync(tmp, dest);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
