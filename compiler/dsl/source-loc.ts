/**
 * Source locations for provenance (DESIGN principle 4): the file:line:col of the model code that
 * created an op, read from the JavaScript stack. Frames inside the DSL itself are skipped. Paths are
 * made relative to the project root so dumps are the same on every machine; the root is found from
 * this file's own frame, which works for the TypeScript sources (tests) and for the source-mapped
 * bundle (the CLI) alike.
 */
import type { SourcePos } from "../../ir/errors";

const FRAME = /\(?((?:file:\/\/)?\/[^():]+|[A-Za-z]:[^():]+):(\d+):(\d+)\)?\s*$/;
const SELF = "compiler/dsl/";

function frames(): { file: string; line: number; col: number }[] {
  const saved = Error.stackTraceLimit;
  Error.stackTraceLimit = 40;
  const stack = new Error().stack ?? "";
  Error.stackTraceLimit = saved;
  const out: { file: string; line: number; col: number }[] = [];
  for (const line of stack.split("\n").slice(1)) {
    const m = FRAME.exec(line);
    if (!m) continue;
    out.push({ file: m[1]!.replace(/^file:\/\//, ""), line: Number(m[2]), col: Number(m[3]) });
  }
  return out;
}

let root: string | undefined;

function projectRoot(fs: { file: string }[]): string {
  if (root !== undefined) return root;
  const self = fs.find((f) => f.file.includes(`/${SELF}`));
  root = self ? self.file.slice(0, self.file.lastIndexOf(`/${SELF}`) + 1) : "";
  return root;
}

/** The location of the first caller outside the DSL, relative to the project root when inside it. */
export function callerLoc(): SourcePos | undefined {
  const fs = frames();
  const base = projectRoot(fs);
  const f = fs.find((x) => !x.file.includes(`/${SELF}`) && !x.file.includes("/node_modules/") && !x.file.startsWith("node:"));
  if (!f) return undefined;
  const file = base && f.file.startsWith(base) ? f.file.slice(base.length) : f.file;
  return { file, line: f.line, col: f.col };
}
