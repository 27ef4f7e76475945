/**
 * The IR text fuzzer: mutated module texts (deletions, insertions of tokens, replaced numbers and
 * words, swapped, repeated and cut lines) through the parser and verifier. Each must either be
 * accepted and print stably (print, parse, print gives the same text), or be refused with a
 * LingcError that has a line and column; anything else is a finding.
 */
import { LingcError } from "../ir/errors";
import { parseModule } from "../ir/parse";
import { printModule } from "../ir/print";
import { verifyModule } from "../ir/verify";
import type { Rng } from "./rng";

export const IR_TOKENS = [
  "%", "@", "(", ")", "[", "]", "{", "}", ",", ":", "=", "->", "*", "+", "\"", "-1", "0", "1", "99999999999999999999", "1e400", "nan", "-inf",
  "2.5", "B", "S", "P", "f32", "i32", "bool", "f8e4m3fn", "scale(f32, block(128, 128))", "scale(bf16, row)", "call", "func", "module", "return",
  "weights", "scope", "loc", "attributes", "reshape", "linear", "group_topk", "moe_dispatch", "attention", "concat", "%0", "%h", "@mlp.gate.weight",
  "{axis = 1}", "{shape = [B, S*2]}", "\n", " ", "//", "%\"q\"", "transfer", "{from = 0, to = 1}", "dispatch(\"gemv if B == 1; gemm\")",
];

const NUMBERS = ["0", "1", "-1", "3", "7", "1024", "4294967296", "9007199254740993", "1.5", "-0"];

export type IrMutation =
  | { kind: "delete"; at: number; len: number }
  | { kind: "insert"; at: number; text: string }
  | { kind: "replaceNumber"; which: number; value: string }
  | { kind: "replaceWord"; which: number; value: string }
  | { kind: "swapLines"; a: number; b: number }
  | { kind: "dupLine"; a: number }
  | { kind: "truncate"; at: number };

/** A random mutation (positions are taken modulo the text's size when applied). */
export function randomIrMutation(rng: Rng): IrMutation {
  const big = () => rng.int(1 << 30);
  switch (rng.int(7)) {
    case 0:
      return { kind: "delete", at: big(), len: 1 + rng.int(40) };
    case 1: {
      const text = rng.int(4) ? rng.pick(IR_TOKENS) : String.fromCharCode(...Array.from({ length: 1 + rng.int(4) }, () => 32 + rng.int(95)));
      return { kind: "insert", at: big(), text };
    }
    case 2:
      return { kind: "replaceNumber", which: big(), value: rng.pick(NUMBERS) };
    case 3:
      return { kind: "replaceWord", which: big(), value: rng.pick(IR_TOKENS) };
    case 4:
      return { kind: "swapLines", a: big(), b: big() };
    case 5:
      return { kind: "dupLine", a: big() };
    default:
      return { kind: "truncate", at: big() };
  }
}

export function applyIrMutation(text: string, m: IrMutation): string {
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

export type IrOutcome = { kind: "accepted" } | { kind: "rejected"; message: string } | { kind: "finding"; what: "unstable print" | "unlocated rejection" | "crash"; message: string };

/** What the parser and verifier make of one text. */
export function checkIrText(text: string): IrOutcome {
  let accepted = false;
  try {
    const mod = parseModule(text, "fuzz.lir");
    verifyModule(mod);
    accepted = true;
    const printed = printModule(mod);
    const again = parseModule(printed, "fuzz.lir");
    verifyModule(again);
    if (printModule(again) !== printed) return { kind: "finding", what: "unstable print", message: "print, parse, print gave another text" };
    return { kind: "accepted" };
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (accepted) return { kind: "finding", what: "unstable print", message: `the printed text of an accepted module was refused: ${message}` };
    if (!(e instanceof LingcError)) return { kind: "finding", what: "crash", message: `${e instanceof Error ? e.constructor.name : typeof e}: ${message}` };
    if (!e.pos || !Number.isInteger(e.pos.line) || !Number.isInteger(e.pos.col)) return { kind: "finding", what: "unlocated rejection", message };
    return { kind: "rejected", message };
  }
}
