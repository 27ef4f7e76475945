/**
 * The printer: a module as readable text that the parser reads back to the same module
 * (`print(parse(print(m))) === print(m)`). Values keep the names the DSL gave them; unnamed values
 * are numbered. Each op line ends with its scope and its DSL source location.
 */
import { Dim } from "./dim";
import type { SourcePos } from "./errors";
import { Func, Module, Op, Value, type AttrValue } from "./module";
import { getOp, type AttrKind } from "./ops";
import { formatDispatch } from "./dispatch";

const PLAIN_VALUE = /^[A-Za-z0-9_.]+$/;
const PLAIN_SYMBOL = /^[A-Za-z_][A-Za-z0-9_.*]*$/;
const PLAIN_NAME = /^[A-Za-z_][A-Za-z0-9_.]*$/;

export function quote(s: string): string {
  return JSON.stringify(s);
}

export function formatFloat(x: number): string {
  if (Number.isNaN(x)) return "nan";
  if (x === Infinity) return "inf";
  if (x === -Infinity) return "-inf";
  if (x !== 0 && Math.abs(x) < 1e-3) return x.toExponential();
  const s = Object.is(x, -0) ? "-0" : String(x);
  return /^-?\d+$/.test(s) ? `${s}.0` : s;
}

export function valueRef(name: string): string {
  return PLAIN_VALUE.test(name) ? `%${name}` : `%${quote(name)}`;
}

export function symbolRef(name: string): string {
  return PLAIN_SYMBOL.test(name) ? `@${name}` : `@${quote(name)}`;
}

function plainName(name: string): string {
  return PLAIN_NAME.test(name) ? name : quote(name);
}

export function formatAttr(kind: AttrKind | undefined, v: AttrValue): string {
  if (v instanceof Dim) return v.toString();
  if (Array.isArray(v)) return `[${v.map((x) => formatAttr(kind === "floats" ? "float" : kind === "dims" ? "dim" : "int", x as AttrValue)).join(", ")}]`;
  if (typeof v === "boolean") return v ? "true" : "false";
  if (typeof v === "string") return kind === "dtype" ? v : quote(v);
  if (typeof v === "number") return kind === "float" ? formatFloat(v) : String(v);
  return String(v);
}

function formatStringAttrs(attrs: Record<string, string>): string {
  const keys = Object.keys(attrs).sort();
  return `{${keys.map((k) => `${plainName(k)} = ${quote(attrs[k]!)}`).join(", ")}}`;
}

function formatLoc(p: SourcePos): string {
  return `loc(${quote(p.file)}:${p.line}:${p.col})`;
}

/** Assigns each value of a function a unique printed name: its own name when free, else a numbered one. */
export function nameValues(f: Func): Map<Value, string> {
  const names = new Map<Value, string>();
  const taken = new Set<string>();
  const claim = (v: Value, want: string | undefined) => {
    let n = want;
    if (n !== undefined && taken.has(n)) {
      let i = 1;
      while (taken.has(`${want}_${i}`)) i++;
      n = `${want}_${i}`;
    }
    if (n !== undefined) {
      taken.add(n);
      names.set(v, n);
    }
  };
  for (const p of f.params) claim(p, p.name);
  for (const op of f.body) for (const r of op.results) if (r.name !== undefined) claim(r, r.name);
  let counter = 0;
  for (const op of f.body) {
    for (const r of op.results) {
      if (names.has(r)) continue;
      while (taken.has(String(counter))) counter++;
      claim(r, String(counter++));
    }
  }
  return names;
}

function printOp(op: Op, names: Map<Value, string>, out: string[]): void {
  const ref = (v: Value) => (v.kind === "weight" ? symbolRef(v.name!) : valueRef(names.get(v) ?? "?"));
  const lhs = op.results.map(ref).join(", ");
  const head = op.opName === "call" ? `call ${symbolRef(op.callee!)}` : op.opName;
  let line = `    ${lhs} = ${head}(${op.operands.map(ref).join(", ")})`;
  const def = getOp(op.opName);
  const keys = def ? Object.keys(def.attrs).filter((k) => op.attrs[k] !== undefined) : Object.keys(op.attrs).sort();
  if (keys.length) line += ` {${keys.map((k) => `${k} = ${formatAttr(def?.attrs[k]?.kind, op.attrs[k]!)}`).join(", ")}}`;
  line += ` : ${op.results.map((r) => r.type.toString()).join(", ")}`;
  if (op.scope) line += ` scope(${quote(op.scope)})`;
  if (op.loc) line += ` ${formatLoc(op.loc)}`;
  if (op.dispatch) line += ` dispatch(${quote(formatDispatch(op.dispatch))})`;
  out.push(line);
}

/** One function as the module printer writes it. */
export function printFunction(f: Func): string {
  const out: string[] = [];
  printFunc(f, out);
  return out.join("\n") + "\n";
}

function printFunc(f: Func, out: string[]): void {
  const names = nameValues(f);
  const params = f.params.map((p) => `${valueRef(names.get(p)!)}: ${p.type}`).join(", ");
  const results = f.results.map((r) => (r.name !== undefined ? `${plainName(r.name)}: ${r.value.type}` : r.value.type.toString()));
  let sig = `-> (${results.join(", ")})`;
  if (Object.keys(f.attrs).length) sig += ` attributes ${formatStringAttrs(f.attrs)}`;
  const head = `  func ${symbolRef(f.name)}(${params})`;
  if (f.weights.length) {
    // Weights one per line: they are the function's interface to the checkpoint.
    out.push(head, `      weights(`);
    f.weights.forEach((w, i) => out.push(`        ${symbolRef(w.name!)}: ${w.type}${i < f.weights.length - 1 ? "," : ""}`));
    out.push(`      )`, `      ${sig} {`);
  } else {
    out.push(`${head} ${sig} {`);
  }
  for (const op of f.body) printOp(op, names, out);
  out.push(`    return ${f.results.map((r) => (r.value.kind === "weight" ? symbolRef(r.value.name!) : valueRef(names.get(r.value)!))).join(", ")}`);
  out.push(`  }`);
}

export function printModule(m: Module): string {
  const out: string[] = [];
  let head = `module ${symbolRef(m.name)}`;
  if (Object.keys(m.attrs).length) head += ` attributes ${formatStringAttrs(m.attrs)}`;
  out.push(`${head} {`);
  m.functions.forEach((f, i) => {
    if (i > 0) out.push("");
    printFunc(f, out);
  });
  out.push("}");
  return out.join("\n") + "\n";
}
