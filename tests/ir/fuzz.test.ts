/**
 * Property test: thousands of mutated IR texts go through the parser and verifier. Each one is
 * either accepted (and then prints stably) or rejected with a LingcError that has a location;
 * nothing else may ever be thrown.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { LingcError } from "../../ir/errors";
import { parseModule } from "../../ir/parse";
import { printModule } from "../../ir/print";
import { verifyModule } from "../../ir/verify";
import { buildLing2 } from "../../models/ling2";
import { resolveModel } from "../../models/resolve";

const tiny = resolveModel("ling-tiny").config;
const SOURCES = [printModule(buildLing2(tiny, "forward")), printModule(buildLing2(tiny, "decode"))];
// Smaller texts (single functions cut out of the dumps) make most runs cheap and varied.
const FUNCS = SOURCES.flatMap((s) => s.split(/\n\n/)).map((f) => (f.startsWith("module") ? `${f}\n}\n` : `module @x {\n${f.replace(/\n}\n$/, "")}\n}\n`));

const TOKENS = [
  "%", "@", "(", ")", "[", "]", "{", "}", ",", ":", "=", "->", "*", "+", "\"", "-1", "0", "1", "99999999999999999999", "1e400", "nan", "-inf",
  "2.5", "B", "S", "P", "f32", "i32", "bool", "f8e4m3fn", "scale(f32, block(128, 128))", "scale(bf16, row)", "call", "func", "module", "return",
  "weights", "scope", "loc", "attributes", "reshape", "linear", "group_topk", "moe_dispatch", "attention", "concat", "%0", "%h", "@mlp.gate.weight",
  "{axis = 1}", "{shape = [B, S*2]}", "\n", " ", "//", "%\"q\"",
];

const mutation = fc.oneof(
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), len: fc.integer({ min: 1, max: 40 }) }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), text: fc.oneof(fc.constantFrom(...TOKENS), fc.string({ maxLength: 4 })) }),
  fc.record({ kind: fc.constant("replaceNumber" as const), which: fc.nat(), value: fc.constantFrom("0", "1", "-1", "3", "7", "1024", "4294967296", "9007199254740993", "1.5", "-0") }),
  fc.record({ kind: fc.constant("replaceWord" as const), which: fc.nat(), value: fc.constantFrom(...TOKENS) }),
  fc.record({ kind: fc.constant("swapLines" as const), a: fc.nat(), b: fc.nat() }),
  fc.record({ kind: fc.constant("dupLine" as const), a: fc.nat() }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
);

type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function apply(text: string, m: Mutation): string {
  const pick = (re: RegExp, i: number, value: string) => {
    const hits = [...text.matchAll(re)];
    if (!hits.length) return text;
    const h = hits[i % hits.length]!;
    return text.slice(0, h.index) + value + text.slice(h.index! + h[0].length);
  };
  switch (m.kind) {
    case "delete": {
      const at = m.at % (text.length + 1);
      return text.slice(0, at) + text.slice(at + m.len);
    }
    case "insert": {
      const at = m.at % (text.length + 1);
      return text.slice(0, at) + m.text + text.slice(at);
    }
    case "replaceNumber":
      return pick(/\d+(\.\d+)?/g, m.which, m.value);
    case "replaceWord":
      return pick(/[%@]?[A-Za-z_][A-Za-z0-9_.*]*/g, m.which, m.value);
    case "swapLines": {
      const lines = text.split("\n");
      const a = m.a % lines.length;
      const b = m.b % lines.length;
      [lines[a], lines[b]] = [lines[b]!, lines[a]!];
      return lines.join("\n");
    }
    case "dupLine": {
      const lines = text.split("\n");
      const a = m.a % lines.length;
      lines.splice(a, 0, lines[a]!);
      return lines.join("\n");
    }
    case "truncate":
      return text.slice(0, m.at % (text.length + 1));
  }
}

function check(text: string): void {
  let accepted = false;
  try {
    const mod = parseModule(text, "fuzz.lir");
    verifyModule(mod);
    accepted = true;
    const printed = printModule(mod);
    const again = parseModule(printed, "fuzz.lir");
    verifyModule(again);
    expect(printModule(again)).toBe(printed);
  } catch (e) {
    if (accepted) throw e;
    if (!(e instanceof LingcError)) throw new Error(`non-LingcError for a mutated text: ${String(e)}\n${(e as Error).stack}`);
    expect(e.pos, `error without a location: ${e.message}`).toBeDefined();
    expect(Number.isInteger(e.pos!.line) && Number.isInteger(e.pos!.col)).toBe(true);
  }
}

describe("parser and verifier under mutation", () => {
  it("small modules: 3000 mutants with 1-3 mutations each", () => {
    fc.assert(
      fc.property(fc.constantFrom(...FUNCS), fc.array(mutation, { minLength: 1, maxLength: 3 }), (src, ms) => check(ms.reduce(apply, src))),
      { numRuns: 3000, seed: 20261129 },
    );
  });

  it("whole ling-tiny dumps: 300 mutants", () => {
    fc.assert(
      fc.property(fc.constantFrom(...SOURCES), fc.array(mutation, { minLength: 1, maxLength: 4 }), (src, ms) => check(ms.reduce(apply, src))),
      { numRuns: 300, seed: 7 },
    );
  });
});
