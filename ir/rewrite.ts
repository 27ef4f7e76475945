/**
 * The rewrite core every pass stands on: use lists, replace-all-uses, erasing ops, a builder that
 * inserts type-checked ops at an insertion point, and outlining / inlining of functions. Each keeps
 * the invariants the verifier checks (values defined before use, SSA, results typed by the op
 * table); ops keep their scope and source location through all of them (DESIGN principle 4).
 */
import { Dim } from "./dim";
import { LingcError, type SourcePos } from "./errors";
import { Func, Module, Op, Value, joinScope, type AttrValue, type Attrs } from "./module";
import { unifyTypes } from "./unify";
import { substituteDispatch } from "./dispatch";
import { inferOp } from "./verify";

/** Who uses each value of a function, where each op stands, and which values the function returns. */
export class Uses {
  private readonly users = new Map<Value, Op[]>();
  private readonly position = new Map<Op, number>();
  private readonly returned: Set<Value>;

  constructor(readonly f: Func) {
    f.body.forEach((op, i) => {
      this.position.set(op, i);
      for (const v of op.operands) {
        const list = this.users.get(v);
        if (list) {
          if (!list.includes(op)) list.push(op);
        } else this.users.set(v, [op]);
      }
    });
    this.returned = new Set(f.results.map((r) => r.value));
  }

  /** The ops that read v (each once, in program order). */
  of(v: Value): readonly Op[] {
    return this.users.get(v) ?? [];
  }

  isReturned(v: Value): boolean {
    return this.returned.has(v);
  }

  /** The only op that reads v, when exactly one does and v is not returned. */
  only(v: Value): Op | undefined {
    const u = this.users.get(v);
    return !this.returned.has(v) && u?.length === 1 ? u[0] : undefined;
  }

  /** Whether nothing reads v and it is not returned. */
  unused(v: Value): boolean {
    return !this.returned.has(v) && !this.users.has(v);
  }

  /** The op's position in the function body (undefined when it is not in it). */
  indexOf(op: Op): number | undefined {
    return this.position.get(op);
  }

  /** The op of this function that defines v (undefined for parameters, weights and other functions' values). */
  def(v: Value): Op | undefined {
    return v.def && this.position.has(v.def) ? v.def : undefined;
  }
}

/** Makes every use of `from` in f (operands and returned values) a use of `to`. */
export function replaceAllUses(f: Func, from: Value, to: Value): void {
  if (!from.type.equals(to.type)) throw new LingcError(`replaceAllUses in @${f.name}: ${to.type} cannot replace ${from.type}`);
  for (const op of f.body) op.operands = op.operands.map((v) => (v === from ? to : v));
  f.results = f.results.map((r) => (r.value === from ? { name: r.name, value: to } : r));
}

/** Removes op from f; its results must be unused. */
export function eraseOp(f: Func, op: Op): void {
  const uses = new Uses(f);
  for (const r of op.results) {
    if (!uses.unused(r)) throw new LingcError(`cannot erase '${op.opName}' in @${f.name}: its result ${r.name ?? ""} is still used`);
  }
  const i = f.body.indexOf(op);
  if (i < 0) throw new LingcError(`cannot erase '${op.opName}': it is not in @${f.name}`);
  f.body.splice(i, 1);
}

export interface BuildOptions {
  scope?: string;
  loc?: SourcePos;
  /** Names for the results (observable value names). */
  names?: (string | undefined)[];
}

/**
 * Creates ops in a function at an insertion point (before an op, or at the end), with result types
 * from the op table's shape rule, so a rewrite cannot build an ill-typed op.
 */
export class Builder {
  private before: Op | undefined;

  constructor(
    readonly m: Module,
    readonly f: Func,
  ) {}

  /** New ops go before `op` (undefined: at the end of the body). */
  setInsertionPointBefore(op: Op | undefined): this {
    this.before = op;
    return this;
  }

  setInsertionPointAfter(op: Op): this {
    const i = this.f.body.indexOf(op);
    this.before = this.f.body[i + 1];
    return this;
  }

  private insert(op: Op): void {
    const i = this.before ? this.f.body.indexOf(this.before) : this.f.body.length;
    if (i < 0) throw new LingcError(`builder: the insertion point is not in @${this.f.name}`);
    this.f.body.splice(i, 0, op);
  }

  /** Appends an op; returns its results. */
  op(opName: string, operands: readonly Value[], attrs: Attrs = {}, opts: BuildOptions = {}): Value[] {
    const probe = new Op(opName, [...operands], attrs, [], opts.scope ?? "", opts.loc);
    const types = inferOp(probe, this.m);
    const results = types.map((t, i) => new Value(t, opts.names?.[i], "result"));
    const op = new Op(opName, [...operands], attrs, results, opts.scope ?? "", opts.loc);
    this.insert(op);
    return results;
  }

  op1(opName: string, operands: readonly Value[], attrs: Attrs = {}, opts: BuildOptions = {}): Value {
    return this.op(opName, operands, attrs, opts)[0]!;
  }

  /** A call of `callee` with `scope` as the prefix of its weight names. */
  call(callee: Func, operands: readonly Value[], scope: string, loc?: SourcePos): Value[] {
    const probe = new Op("call", [...operands], {}, [], scope, loc, callee.name);
    const types = inferOp(probe, this.m);
    const results = types.map((t) => new Value(t, undefined, "result"));
    const op = new Op("call", [...operands], {}, results, scope, loc, callee.name);
    this.insert(op);
    return results;
  }
}

/**
 * Moves `ops` (of f, in any order) into a new function `name` and puts a call to it where the last
 * of them stood. The new function's parameters are the values the ops read from outside, its weights
 * the weights they read (same names, so the call has scope "" and weight names are unchanged), its
 * results the values read after it or returned. Every op keeps its scope and location; the call
 * takes the last op's location. Throws if an outside op between them reads one of their results
 * (the group would not be contiguous in dataflow).
 */
export function outline(m: Module, f: Func, group: Iterable<Op>, name: string, attrs: Record<string, string> = {}): Func {
  const set = new Set(group);
  const ops = f.body.filter((o) => set.has(o));
  if (ops.length !== set.size) throw new LingcError(`outline @${name}: some ops are not in @${f.name}`);
  if (m.getFunc(name)) throw new LingcError(`outline: function @${name} already exists`);
  const last = ops[ops.length - 1]!;
  const lastAt = f.body.indexOf(last);
  const defined = new Set(ops.flatMap((o) => o.results));
  for (const op of f.body.slice(0, lastAt)) {
    if (set.has(op)) continue;
    if (op.operands.some((v) => defined.has(v))) throw new LingcError(`outline @${name}: '${op.opName}' reads a result of the group before the group ends`);
  }
  const kernel = new Func(name);
  kernel.attrs = { ...attrs };
  const inner = new Map<Value, Value>();
  const args: Value[] = [];
  for (const op of ops) {
    op.operands = op.operands.map((v) => {
      if (defined.has(v)) return v;
      let w = inner.get(v);
      if (!w) {
        w = new Value(v.type, v.name ?? `in${args.length}`, v.kind === "weight" ? "weight" : "param");
        inner.set(v, w);
        if (v.kind === "weight") kernel.weights.push(w);
        else {
          kernel.params.push(w);
          args.push(v);
        }
      }
      return w;
    });
  }
  // Parameter names must be unique even when outer names repeat.
  const seen = new Set<string>();
  kernel.params.forEach((p, i) => {
    if (seen.has(p.name!)) p.name = `${p.name}_${i}`;
    seen.add(p.name!);
  });
  kernel.body = ops;
  // A constant the group shares with ops outside it is copied out rather than returned: a kernel
  // result is a buffer written per element of the kernel's grid, not a scalar the call could hand on.
  const copies: Op[] = [];
  const constants = new Map<Value, Value>();
  for (const op of ops) {
    if (op.opName !== "constant") continue;
    const r = op.results[0]!;
    const copy = new Op("constant", [], { ...op.attrs }, [new Value(r.type, undefined, "result")], op.scope, op.loc);
    copies.push(copy);
    constants.set(r, copy.results[0]!);
  }
  const rest = f.body.filter((o) => !set.has(o));
  for (const op of rest) op.operands = op.operands.map((v) => constants.get(v) ?? v);
  f.results = f.results.map((r) => ({ name: r.name, value: constants.get(r.value) ?? r.value }));
  const usedCopies = new Set(rest.flatMap((o) => o.operands).concat(f.results.map((r) => r.value)));
  const copied = copies.filter((c) => usedCopies.has(c.results[0]!));
  const outside = new Set(rest.flatMap((o) => o.operands));
  const returned = new Set(f.results.map((r) => r.value));
  const outputs = ops.flatMap((o) => o.results).filter((r) => outside.has(r) || returned.has(r));
  if (outputs.length === 0) throw new LingcError(`outline @${name}: the group's results are never used`);
  const resultNames = new Set<string>();
  kernel.results = outputs.map((r, i) => {
    let n = r.name ?? `out${i}`;
    if (resultNames.has(n)) n = `${n}_${i}`;
    resultNames.add(n);
    return { name: n, value: r };
  });
  const callResults = outputs.map((r) => new Value(r.type, undefined, "result"));
  const call = new Op("call", args, {}, callResults, "", last.loc, name);
  const replace = new Map(outputs.map((r, i) => [r, callResults[i]!]));
  for (const op of rest) op.operands = op.operands.map((v) => replace.get(v) ?? v);
  f.results = f.results.map((r) => ({ name: r.name, value: replace.get(r.value) ?? r.value }));
  f.body = [...f.body.slice(0, lastAt).filter((o) => !set.has(o)), ...copied, call, ...f.body.slice(lastAt + 1)];
  m.functions.splice(m.functions.indexOf(f), 0, kernel);
  return kernel;
}

/**
 * Replaces a call in f by a copy of the callee's body. Copied ops take the call's scope as a prefix
 * (so provenance and weight names stay the full ones); the callee's weights become f's weights under
 * the prefixed names (reused when f already declares the same name with the same type). The callee
 * itself is left in the module (dce drops it once nothing calls it).
 */
export function inline(m: Module, f: Func, call: Op): void {
  if (call.opName !== "call") throw new LingcError(`inline: '${call.opName}' is not a call`);
  const callee = m.getFunc(call.callee!);
  if (!callee) throw new LingcError(`inline: unknown function @${call.callee}`);
  const at = f.body.indexOf(call);
  if (at < 0) throw new LingcError(`inline: the call is not in @${f.name}`);
  // The callee's symbols in the caller's terms (its types and dim attributes are rewritten with them).
  const u = unifyTypes(
    callee.params.map((p) => p.type),
    call.operands.map((v) => v.type),
    callee.params.map((p) => `%${p.name}`),
  );
  if ("problem" in u) throw new LingcError(`inline @${callee.name}: ${u.problem}`);
  const subst = u.bindings;
  const dim = (d: Dim) => d.substitute(subst);
  const attr = (a: AttrValue): AttrValue => (a instanceof Dim ? dim(a) : Array.isArray(a) && a.some((x) => x instanceof Dim) ? (a as readonly Dim[]).map(dim) : a);
  const env = new Map<Value, Value>();
  callee.params.forEach((p, i) => env.set(p, call.operands[i]!));
  for (const w of callee.weights) {
    const full = joinScope(call.scope, w.name!);
    let mine = f.weights.find((x) => x.name === full);
    if (mine && !mine.type.equals(w.type)) throw new LingcError(`inline @${callee.name} into @${f.name}: weight ${full} is ${mine.type} here and ${w.type} there`);
    if (!mine) {
      mine = new Value(w.type, full, "weight");
      f.weights.push(mine);
    }
    env.set(w, mine);
  }
  const copies: Op[] = [];
  for (const op of callee.body) {
    const results = op.results.map((r) => new Value(r.type.withShape(r.type.shape.map(dim)), r.name !== undefined ? joinScope(call.scope, r.name) : undefined, "result"));
    op.results.forEach((r, i) => env.set(r, results[i]!));
    const attrs = Object.fromEntries(Object.entries(op.attrs).map(([k, v]) => [k, attr(v)]));
    const copy = new Op(op.opName, op.operands.map((v) => env.get(v)!), attrs, results, joinScope(call.scope, op.scope), op.loc, op.callee);
    if (op.dispatch) copy.dispatch = substituteDispatch(op.dispatch, subst);
    copies.push(copy);
  }
  f.body.splice(at, 1, ...copies);
  call.results.forEach((r, i) => replaceAllUses(f, r, env.get(callee.results[i]!.value)!));
}
