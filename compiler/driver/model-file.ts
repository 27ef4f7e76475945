/**
 * Model definitions written in the DSL as a TypeScript or JavaScript file (`examples/toy-mlp.ts`):
 * the file's default export is a traced module (or a list of them, one per graph). The file is
 * bundled with esbuild together with lingc's printer and run in this process; what comes back is the
 * modules' text form, which the driver parses like any `.lir` (the text form is the IR, so nothing
 * of the bundle's own copy of the IR classes leaks into the compiler). Source maps stay on, so the
 * ops' locations name the model file's lines.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { LingcError } from "../../ir/errors";

const HERE = dirname(fileURLToPath(import.meta.url));

/** The printer's source: beside the driver in the repository, or above dist/ in the bundle. */
function printerSource(): string {
  for (const p of [join(HERE, "../../ir/print.ts"), join(HERE, "../ir/print.ts")]) if (existsSync(p)) return p;
  throw new LingcError("lingc's sources (ir/print.ts) are missing from this installation: a model file needs them to be compiled");
}

export function isModelFile(path: string): boolean {
  return /\.(ts|mts|js|mjs)$/.test(path);
}

/** Runs a model file and returns its modules' texts (one per graph). */
export async function modelFileTexts(path: string): Promise<string[]> {
  const file = resolve(path);
  if (!existsSync(file)) throw new LingcError(`cannot read ${path}: ENOENT`);
  let esbuild: typeof import("esbuild");
  try {
    esbuild = await import("esbuild");
  } catch {
    throw new LingcError(`${path}: compiling a model file needs the esbuild package (npm install esbuild)`);
  }
  const entry = [
    `import model from ${JSON.stringify(file)};`,
    `import { printModule } from ${JSON.stringify(printerSource())};`,
    `const all = Array.isArray(model) ? model : [model];`,
    `export default all.map((m) => (m && Array.isArray(m.functions) && typeof m.name === "string" ? printModule(m) : null));`,
  ].join("\n");
  let code: string;
  try {
    const r = await esbuild.build({
      stdin: { contents: entry, resolveDir: dirname(file), loader: "ts", sourcefile: "lingc-model-entry.ts" },
      bundle: true,
      platform: "node",
      format: "esm",
      target: "node20",
      write: false,
      sourcemap: "inline",
      logLevel: "silent",
      external: ["onnxruntime-node", "webgpu", "esbuild"],
    });
    code = r.outputFiles[0]!.text;
  } catch (e) {
    const first = (e as { errors?: { text: string; location?: { file: string; line: number; column: number } }[] }).errors?.[0];
    const where = first?.location ? `${first.location.file}:${first.location.line}:${first.location.column + 1}: ` : "";
    throw new LingcError(`${where}${first?.text ?? (e as Error).message} (while bundling the model file ${path})`);
  }
  const dir = mkdtempSync(join(tmpdir(), "lingc-model-"));
  try {
    const out = join(dir, "model.mjs");
    writeFileSync(out, code);
    process.setSourceMapsEnabled?.(true);
    const mod = (await import(pathToFileURL(out).href)) as { default: unknown };
    const texts = mod.default;
    if (!Array.isArray(texts) || texts.length === 0 || texts.some((t) => typeof t !== "string")) throw new LingcError(`${path}: the default export must be a module traced with the DSL (ModuleTracer.finish()), or a list of them`);
    return texts as string[];
  } catch (e) {
    if (e instanceof LingcError) throw e;
    throw new LingcError(`${path}: running the model file failed: ${(e as Error).message.split("\n")[0]}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
