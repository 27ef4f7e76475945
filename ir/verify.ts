/**
 * The verifier: checks that a module is well formed and well typed. Every value is defined once
 * before use; every op exists in the op table, has the right operands and attributes, and its
 * declared result types are the ones its shape rule gives; every call matches its callee's
 * signature (symbols unified); calls form no cycle; results match the signature; a cache grown in
 * place is used as cache-storage.ts allows. Errors carry the
 * op's location in the IR text when it was parsed, or its DSL source location.
 */
import { verifyCacheStorage } from "./cache-storage";
import { LingcError, OpError, type SourcePos } from "./errors";
import { Func, Module, Op, Value, isStackedWeight } from "./module";
import { attrsProblem, getOp } from "./ops";
import { typeProblem, type TensorType } from "./types";
import { unifyTypes } from "./unify";

function where(op: Op | undefined, f: Func, m: Module): SourcePos | undefined {
  return op?.textPos ?? op?.loc ?? f.textPos ?? m.textPos;
}

function err(msg: string, pos: SourcePos | undefined, f: Func, op?: Op): never {
  const what = op ? `in @${f.name}, op '${op.opName === "call" ? `call @${op.callee}` : op.opName}'` : `in @${f.name}`;
  throw new LingcError(`${msg} (${what})`, pos);
}

/** Result types of a call to `callee` with arguments of `argTypes`, or throws OpError. */
export function inferCall(callee: Func, argTypes: readonly TensorType[]): TensorType[] {
  if (argTypes.length !== callee.params.length) {
    throw new OpError(`@${callee.name} takes ${callee.params.length} arguments, got ${argTypes.length}`);
  }
  const r = unifyTypes(
    callee.params.map((p) => p.type),
    argTypes,
    callee.params.map((p) => `argument %${p.name}`),
  );
  if ("problem" in r) throw new OpError(`call to @${callee.name}: ${r.problem}`);
  return callee.results.map((res) => res.value.type.withShape(res.value.type.shape.map((d) => d.substitute(r.bindings))));
}

/** Result types of `op` from its operand types (op table rule or callee signature); throws OpError. */
export function inferOp(op: Op, m: Module): TensorType[] {
  const ins = op.operands.map((v) => v.type);
  if (op.opName === "call") {
    const callee = m.getFunc(op.callee ?? "");
    if (!callee) throw new OpError(`call to unknown function @${op.callee}`);
    return inferCall(callee, ins);
  }
  const def = getOp(op.opName);
  if (!def) throw new OpError(`unknown op '${op.opName}'`);
  const n = def.operands.length;
  if (def.variadic ? ins.length < n : ins.length !== n) {
    throw new OpError(`'${op.opName}' takes ${def.variadic ? `at least ${n}` : n} operand(s) (${def.operands.join(", ")}${def.variadic ? ", ..." : ""}), got ${ins.length}`);
  }
  const problem = attrsProblem(def, op.attrs);
  if (problem) throw new OpError(problem);
  // An op that does not read scale layouts would drop them (a reshape or a gather of the codes alone
  // gives the codes as values): refused, naming the operand.
  if (!def.traits?.includes("scaled")) {
    const at = ins.findIndex((t) => t.quant);
    if (at >= 0) throw new OpError(`'${op.opName}' does not take a scaled fp8 operand (${def.operands[Math.min(at, n - 1)]}: ${ins[at]}): it would drop the scales; dequantize it first`);
  }
  return def.infer(ins, op.attrs);
}

function checkCallGraph(m: Module): void {
  const state = new Map<string, "visiting" | "done">();
  const visit = (f: Func, path: string[]): void => {
    const s = state.get(f.name);
    if (s === "done") return;
    if (s === "visiting") {
      throw new LingcError(`recursive call cycle: ${[...path, f.name].map((n) => `@${n}`).join(" -> ")}`, f.textPos);
    }
    state.set(f.name, "visiting");
    for (const op of f.body) {
      if (op.opName !== "call") continue;
      const callee = m.getFunc(op.callee ?? "");
      if (callee) visit(callee, [...path, f.name]);
    }
    state.set(f.name, "done");
  };
  for (const f of m.functions) visit(f, []);
}

function verifyFunc(f: Func, m: Module): void {
  const defined = new Set<Value>();
  const names = new Set<string>();
  for (const p of f.params) {
    if (!p.name) err("a parameter has no name", f.textPos, f);
    if (names.has(p.name)) err(`parameter %${p.name} is declared twice`, f.textPos, f);
    names.add(p.name);
    const tp = typeProblem(p.type);
    if (tp) err(`parameter %${p.name}: ${tp}`, f.textPos, f);
    defined.add(p);
  }
  const wnames = new Set<string>();
  for (const w of f.weights) {
    if (!w.name) err("a weight has no name", f.textPos, f);
    if (wnames.has(w.name)) err(`weight @${w.name} is declared twice`, f.textPos, f);
    wnames.add(w.name);
    const tp = typeProblem(w.type);
    if (tp) err(`weight @${w.name}: ${tp}`, f.textPos, f);
    if (!w.type.shape.every((d) => d.isConst())) err(`weight @${w.name} must have a numeric shape, got ${w.type}`, f.textPos, f);
    if (isStackedWeight(w.name) && w.type.rank < 1) err(`stacked weight @${w.name} needs an expert axis`, f.textPos, f);
    defined.add(w);
  }
  for (const op of f.body) {
    const pos = where(op, f, m);
    op.operands.forEach((v, i) => {
      if (!defined.has(v)) err(`operand ${i} (${v.name ? `%${v.name}` : "unnamed"}) is not defined before this op`, pos, f, op);
    });
    let types: TensorType[];
    try {
      types = inferOp(op, m);
    } catch (e) {
      if (e instanceof OpError) err(e.message, pos, f, op);
      throw e;
    }
    if (types.length !== op.results.length) err(`declares ${op.results.length} result(s) but produces ${types.length}`, pos, f, op);
    op.results.forEach((r, i) => {
      const tp = typeProblem(r.type);
      if (tp) err(`result ${i}: ${tp}`, pos, f, op);
      if (!r.type.equals(types[i]!)) err(`result ${i} is declared ${r.type} but the op produces ${types[i]}`, pos, f, op);
      if (defined.has(r)) err(`result ${i} is defined twice`, pos, f, op);
      defined.add(r);
    });
  }
  if (f.results.length === 0) err("a function must return at least one value", f.textPos, f);
  const rnames = new Set<string>();
  for (const r of f.results) {
    if (!defined.has(r.value)) err(`returned value ${r.value.name ? `%${r.value.name}` : ""} is not defined`, f.textPos, f);
    if (r.name !== undefined) {
      if (rnames.has(r.name)) err(`result name '${r.name}' is used twice`, f.textPos, f);
      rnames.add(r.name);
    }
  }
}

export function verifyModule(m: Module): void {
  const seen = new Set<string>();
  for (const f of m.functions) {
    if (seen.has(f.name)) throw new LingcError(`function @${f.name} is defined twice`, f.textPos);
    seen.add(f.name);
  }
  checkCallGraph(m);
  for (const f of m.functions) verifyFunc(f, m);
  verifyCacheStorage(m);
}
