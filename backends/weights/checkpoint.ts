/**
 * Where weights are read from: an HF checkpoint folder (config.json plus the weights in one
 * `model.safetensors`, or in shards listed by `model.safetensors.index.json` or named
 * `model-XXXXX-of-YYYYY.safetensors`; other safetensors files in the folder, such as inputs and
 * golden values, are not weights and are ignored), or one `.safetensors` file.
 */
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { LingcError } from "../../ir/errors";
import type { Tensor } from "../../ir/tensor";
import { SafetensorsFile, type StEntry } from "./safetensors";

export class Checkpoint {
  private readonly index = new Map<string, { file: SafetensorsFile; entry: StEntry }>();

  private constructor(
    /** The folder (for a single file: the folder it is in). */
    readonly dir: string,
    readonly files: SafetensorsFile[],
    /** What was opened: the folder, or the file. */
    readonly path: string,
  ) {
    for (const f of files) {
      for (const [name, entry] of f.entries) {
        const prev = this.index.get(name);
        if (prev) throw new LingcError(`${dir}: tensor "${name}" is in both ${prev.file.path} and ${f.path}`);
        this.index.set(name, { file: f, entry });
      }
    }
  }

  /** Opens a checkpoint folder, or one safetensors file. */
  static open(path: string): Checkpoint {
    if (path.endsWith(".safetensors") && existsSync(path) && statSync(path).isFile()) return new Checkpoint(dirname(path), [SafetensorsFile.open(path)], path);
    const files = weightFiles(path).map((p) => SafetensorsFile.open(p));
    return new Checkpoint(path, files, path);
  }

  has(name: string): boolean {
    return this.index.has(name);
  }

  entry(name: string): { file: SafetensorsFile; entry: StEntry } | undefined {
    return this.index.get(name);
  }

  read(name: string): Tensor {
    const e = this.index.get(name);
    if (!e) throw new LingcError(`${this.dir}: the checkpoint has no tensor "${name}"`);
    return e.file.read(name);
  }

  names(): string[] {
    return [...this.index.keys()];
  }

  close(): void {
    for (const f of this.files) f.close();
  }
}

function weightFiles(dir: string): string[] {
  if (!existsSync(dir)) throw new LingcError(`checkpoint folder ${dir} does not exist`);
  const indexPath = join(dir, "model.safetensors.index.json");
  if (existsSync(indexPath)) {
    let index: unknown;
    try {
      index = JSON.parse(readFileSync(indexPath, "utf8"));
    } catch (e) {
      throw new LingcError(`${indexPath}: not valid JSON (${(e as Error).message})`);
    }
    const map = (index as { weight_map?: unknown })?.weight_map;
    if (typeof map !== "object" || map === null || !Object.values(map).every((v) => typeof v === "string")) {
      throw new LingcError(`${indexPath}: "weight_map" must map tensor names to file names`);
    }
    const names = [...new Set(Object.values(map as Record<string, string>))].sort();
    for (const n of names) if (n === "" || n === "." || n.includes("/") || n.includes("..")) throw new LingcError(`${indexPath}: shard name "${n}" must be a file in the folder`);
    return names.map((n) => join(dir, n));
  }
  if (existsSync(join(dir, "model.safetensors"))) return [join(dir, "model.safetensors")];
  const shards = readdirSync(dir)
    .filter((n) => /^model-\d+-of-\d+\.safetensors$/.test(n))
    .sort();
  if (shards.length) return shards.map((n) => join(dir, n));
  throw new LingcError(`${dir}: no weights found (expected model.safetensors, model.safetensors.index.json or model-XXXXX-of-YYYYY.safetensors)`);
}
