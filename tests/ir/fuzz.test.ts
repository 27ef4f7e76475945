/**
 * Property test: thousands of mutated IR texts go through the parser and verifier. Each one is
 * either accepted (and then prints stably) or rejected with a LingcError that has a location;
 * nothing else may ever be thrown.
 */
import fc from "fast-check";
import { describe, it } from "vitest";
import { printModule } from "../../ir/print";
import { applyIrMutation, checkIrText, IR_TOKENS } from "../../fuzz/ir";
import { buildLing2 } from "../../models/ling2";
import { resolveModel } from "../../models/resolve";

const tiny = resolveModel("ling-tiny").config;
const SOURCES = [printModule(buildLing2(tiny, "forward")), printModule(buildLing2(tiny, "decode"))];
// Smaller texts (single functions cut out of the dumps) make most runs cheap and varied.
const FUNCS = SOURCES.flatMap((s) => s.split(/\n\n/)).map((f) => (f.startsWith("module") ? `${f}\n}\n` : `module @x {\n${f.replace(/\n}\n$/, "")}\n}\n`));

const mutation = fc.oneof(
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), text: fc.oneof(fc.constantFrom(...IR_TOKENS), fc.string({ maxLength: 4 })) }),
  fc.record({ kind: fc.constant("replaceNumber" as const), which: fc.nat(), value: fc.constantFrom("0", "1", "-1", "3", "7", "1024", "4294967296", "9007199254740993", "1.5", "-0") }),
  fc.record({ kind: fc.constant("replaceWord" as const), which: fc.nat(), value: fc.constantFrom(...IR_TOKENS) }),
  fc.record({ kind: fc.constant("swapLines" as const), a: fc.nat(), b: fc.nat() }),
  fc.record({ kind: fc.constant("dupLine" as const), a: fc.nat() }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
);

/** fuzz/ir.ts's check, as an assertion (fast-check shrinks a failing case to a small one). */
function check(text: string): void {
  const r = checkIrText(text);
  if (r.kind === "finding") throw new Error(`${r.what}: ${r.message}\n${text}`);
}

describe("parser and verifier under mutation", () => {
  it("small modules: 3000 mutants with 1-3 mutations each", () => {
    fc.assert(
      fc.property(fc.constantFrom(...FUNCS), fc.array(mutation, { minLength: 1, maxLength: 3 }), (src, ms) => check(ms.reduce(applyIrMutation, src))),
      { numRuns: 3000, seed: 20261129 },
    );
  });

  it("whole ling-tiny dumps: 300 mutants", () => {
    fc.assert(
      fc.property(fc.constantFrom(...SOURCES), fc.array(mutation, { minLength: 1, maxLength: 4 }), (src, ms) => check(ms.reduce(applyIrMutation, src))),
      { numRuns: 300, seed: 7 },
    );
  });
});
