/** Output helpers for commands: streams that tests can capture, and atomic file writes. */
import { mkdirSync, readdirSync, realpathSync, statSync } from "node:fs";
import { writeOutputFile } from "../../backends/output-file";
import { dirname, join } from "node:path";
import { LingcError } from "../../ir/errors";

export interface CliIO {
  out(text: string): void;
  err(text: string): void;
}

export const processIO: CliIO = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
};

/** Makes sure `dir` is a folder (creating it), with an error naming it when that is impossible. */
export function ensureDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new LingcError(`cannot create output folder ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  if (!statSync(dir).isDirectory()) throw new LingcError(`output path ${dir} exists and is not a folder`);
}

/**
 * Writes a file through a temporary name and a rename (backends/output-file.ts: checked writes,
 * devices written through, never replaced), creating its folder.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array): void {
  ensureDir(dirname(path));
  writeOutputFile(path, data);
}

/**
 * Refuses an output path that is one of the command's inputs (the same file, through any path):
 * `inputs` are files or folders (a folder stands for every file in it, as a checkpoint does).
 */
export function refuseInputAsOutput(out: string, inputs: readonly (string | undefined)[], option = "--out"): void {
  const real = (p: string) => {
    try {
      return realpathSync(p);
    } catch {
      return undefined;
    }
  };
  const target = real(out);
  if (target === undefined) return;
  for (const input of inputs) {
    if (!input) continue;
    const r = real(input);
    if (r === undefined) continue;
    const isDir = statSync(r).isDirectory();
    if (r === target || (isDir && readdirSync(r).some((f) => real(join(r, f)) === target))) {
      throw new LingcError(`${option} ${out} is an input of this command (${isDir ? `a file of ${input}` : input}); write the output somewhere else`);
    }
  }
}

