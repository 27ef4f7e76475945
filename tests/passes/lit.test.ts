/**
 * Passes as text before and after (MLIR's lit style): each file under lit/ (fusion/: one per fusion
 * pattern; decompose/) holds a pipeline on its first line, the module before, a `// -----` line and
 * the module after. The test runs the pipeline with verification after each pass and compares the
 * printed module. (To rewrite the expected modules after a deliberate change:
 * LINGC_UPDATE_EXPECTED=1 npx vitest run tests/passes/lit.test.ts, then read every diff.)
 */
import { readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseModule } from "../../ir/parse";
import { printModule } from "../../ir/print";
import { verifyModule } from "../../ir/verify";
import { parsePipeline, runPasses } from "../../compiler/passes/manager";
import { FUSIONS } from "../../compiler/passes/fusion";

const DIR = join(__dirname, "lit");
const SEP = "// -----\n";
const cases = readdirSync(DIR)
  .flatMap((d) => readdirSync(join(DIR, d)).map((f) => `${d}/${f}`))
  .filter((f) => f.endsWith(".lir"))
  .sort();

describe("passes, text before and after", () => {
  it.each(cases)("%s", (file) => {
    const path = join(DIR, file);
    const text = readFileSync(path, "utf8");
    const [head, ...rest] = text.split("\n");
    const pipeline = /^\/\/ (\S+):/.exec(head!)![1]!;
    const [before, after] = rest.join("\n").split(SEP) as [string, string | undefined];
    const m = parseModule(before, file);
    verifyModule(m);
    runPasses(m, parsePipeline(pipeline), { verifyEach: true });
    const got = printModule(m);
    expect(printModule(parseModule(got, `${file} (after)`)), "the result prints back the same after a parse").toBe(got);
    if (process.env["LINGC_UPDATE_EXPECTED"] === "1") writeFileSync(path, `${head}\n${before.trimEnd()}\n${SEP}${got}`);
    else expect(got).toBe(after);
  });

  it("every fusion pattern of the table has a case", () => {
    const all = cases.map((f) => readFileSync(join(DIR, f), "utf8").split(SEP)[1] ?? "").join("\n");
    for (const name of FUSIONS) expect(all, name).toContain(`fusion = "${name === "elementwise" ? "epilogue" : name}"`);
    expect(all).toContain('fusion = "elementwise"');
  });
});
