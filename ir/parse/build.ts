/**
 * From the syntax tree to a Module: resolves value and weight names, turns attribute and dimension
 * expressions into typed values using the op table's attribute kinds, and checks that returned
 * values match the signature. Each problem is reported at the token it concerns.
 */
import { Dim, isSymbolName } from "../dim";
import { isDType } from "../dtype";
import { LingcError, OpError, type SourcePos } from "../errors";
import { Func, Module, Op, Value, type AttrValue, type Attrs } from "../module";
import { getOp, type AttrKind } from "../ops";
import { TensorType, type Granularity } from "../types";
import type { AttrAst, Expr, FuncAst, ModuleAst, OpAst, Pos, TypeAst } from "./grammar";
import { parseDispatch } from "../dispatch";

class Builder {
  constructor(readonly file: string) {}

  at(p: Pos): SourcePos {
    return { file: this.file, line: p.line, col: p.col };
  }

  fail(msg: string, p: Pos): never {
    throw new LingcError(msg, this.at(p));
  }

  int(text: string, p: Pos, what: string): number {
    const n = Number(text);
    if (!Number.isSafeInteger(n)) this.fail(`${what} must be an integer, got ${text}`, p);
    return n;
  }

  number(text: string): number {
    if (text === "inf") return Infinity;
    if (text === "-inf") return -Infinity;
    if (text === "nan" || text === "-nan") return NaN;
    return Number(text);
  }

  dim(e: Expr): Dim {
    try {
      switch (e.kind) {
        case "num": {
          const n = Number(e.text);
          if (!Number.isSafeInteger(n) || n < 0) this.fail(`a dimension must be a non-negative integer, got ${e.text}`, e.pos);
          return Dim.of(n);
        }
        case "ident":
          if (!isSymbolName(e.name)) this.fail(`'${e.name}' is not a valid dimension symbol`, e.pos);
          return Dim.sym(e.name);
        case "add":
          return e.items.reduce((acc, x) => acc.add(this.dim(x)), Dim.of(0));
        case "mul":
          return e.items.reduce((acc, x) => acc.mul(this.dim(x)), Dim.of(1));
      }
    } catch (err) {
      if (err instanceof OpError) this.fail(err.message, e.pos);
      throw err;
    }
  }

  type(t: TypeAst): TensorType {
    if (!isDType(t.dtype)) this.fail(`unknown dtype '${t.dtype}'`, t.pos);
    const shape = t.dims.map((d) => this.dim(d));
    if (!t.scale) return new TensorType(t.dtype, shape);
    const s = t.scale;
    if (!isDType(s.dtype)) this.fail(`unknown scale dtype '${s.dtype}'`, s.pos);
    let g: Granularity;
    if (s.gran === "block") {
      if (!s.block) this.fail("block scales need a size: block(rows, cols)", s.pos);
      g = { kind: "block", rows: this.int(s.block[0], s.pos, "block rows"), cols: this.int(s.block[1], s.pos, "block cols") };
    } else if ((s.gran === "tensor" || s.gran === "row") && !s.block) {
      g = { kind: s.gran };
    } else {
      this.fail(`unknown scale granularity '${s.gran}' (tensor, row or block(rows, cols))`, s.pos);
    }
    return new TensorType(t.dtype, shape, { scaleDtype: s.dtype, granularity: g });
  }

  attr(kind: AttrKind, a: AttrAst, key: string): AttrValue {
    const bad = (want: string): never => this.fail(`attribute '${key}' must be ${want}`, a.pos);
    const single = (x: AttrAst): Expr | undefined => (x.kind === "expr" ? x.expr : undefined);
    switch (kind) {
      case "string":
        return a.kind === "string" ? a.value : bad("a string");
      case "dims":
        return a.kind === "list" ? a.items.map((x) => (x.kind === "expr" ? this.dim(x.expr) : bad("a list of dimensions"))) : bad("a list of dimensions");
      case "dim":
        return a.kind === "expr" ? this.dim(a.expr) : bad("a dimension");
      case "ints":
      case "floats":
        if (a.kind !== "list") return bad(kind === "ints" ? "a list of integers" : "a list of numbers");
        return a.items.map((x) => this.attr(kind === "ints" ? "int" : "float", x, key) as number);
    }
    const e = single(a);
    if (!e) return bad(kind === "bool" ? "true or false" : kind === "dtype" ? "a dtype" : "a number");
    if (kind === "bool" || kind === "dtype") {
      if (e.kind !== "ident") return bad(kind === "bool" ? "true or false" : "a dtype");
      if (kind === "bool") return e.name === "true" ? true : e.name === "false" ? false : bad("true or false");
      return isDType(e.name) ? e.name : bad(`a dtype (unknown dtype '${e.name}')`);
    }
    if (e.kind !== "num") return bad(kind === "int" ? "an integer" : "a number");
    if (kind === "int") return this.int(e.text, e.pos, `attribute '${key}'`);
    return this.number(e.text);
  }

  attrs(op: OpAst): Attrs {
    const out: Attrs = {};
    if (op.opName === "call") {
      if (op.attrs.length) this.fail("calls take no attributes", op.attrs[0]!.pos);
      return out;
    }
    const def = getOp(op.opName);
    if (!def) this.fail(`unknown op '${op.opName}'`, op.namePos);
    for (const a of op.attrs) {
      const spec = def.attrs[a.key];
      if (!spec) this.fail(`op '${op.opName}' has no attribute '${a.key}'`, a.pos);
      if (Object.prototype.hasOwnProperty.call(out, a.key)) this.fail(`attribute '${a.key}' is given twice`, a.pos);
      out[a.key] = this.attr(spec.kind, a.value, a.key);
    }
    return out;
  }

  func(fa: FuncAst): Func {
    const f = new Func(fa.name);
    f.textPos = this.at(fa.pos);
    const values = new Map<string, Value>();
    const weights = new Map<string, Value>();
    for (const p of fa.params) {
      if (values.has(p.name)) this.fail(`parameter %${p.name} is declared twice`, p.pos);
      const v = new Value(this.type(p.type), p.name, "param");
      values.set(p.name, v);
      f.params.push(v);
    }
    for (const w of fa.weights) {
      if (weights.has(w.name)) this.fail(`weight @${w.name} is declared twice`, w.pos);
      const v = new Value(this.type(w.type), w.name, "weight");
      weights.set(w.name, v);
      f.weights.push(v);
    }
    for (const a of fa.attrs) {
      if (Object.prototype.hasOwnProperty.call(f.attrs, a.key)) this.fail(`attribute '${a.key}' is given twice`, a.pos);
      f.attrs[a.key] = a.value;
    }
    const resolve = (r: { ref: string; weight: boolean; pos: Pos }): Value => {
      const v = r.weight ? weights.get(r.ref) : values.get(r.ref);
      if (v) return v;
      if (r.weight) {
        this.fail(`unknown weight @${r.ref}: @${fa.name} declares ${f.weights.length ? f.weights.map((w) => `@${w.name}`).slice(0, 6).join(", ") + (f.weights.length > 6 ? ", ..." : "") : "no weights"}`, r.pos);
      }
      this.fail(`use of undefined value %${r.ref}`, r.pos);
    };
    for (const oa of fa.ops) {
      const operands = oa.operands.map(resolve);
      const attrs = this.attrs(oa);
      if (oa.types.length !== oa.results.length) {
        this.fail(`${oa.results.length} result(s) but ${oa.types.length} type(s)`, oa.pos);
      }
      const results = oa.results.map((r, i) => {
        if (values.has(r.name)) this.fail(`value %${r.name} is defined twice`, r.pos);
        // Numbered names (%0, %12) are the printer's placeholders for unnamed values.
        const v = new Value(this.type(oa.types[i]!), /^\d+$/.test(r.name) ? undefined : r.name, "result");
        values.set(r.name, v);
        return v;
      });
      let loc: SourcePos | undefined;
      if (oa.loc) {
        loc = { file: oa.loc.file, line: this.int(oa.loc.line, oa.pos, "loc line"), col: this.int(oa.loc.col, oa.pos, "loc column") };
      }
      const op = new Op(oa.opName, operands, attrs, results, oa.scope ?? "", loc, oa.callee);
      op.textPos = this.at(oa.pos);
      if (oa.dispatch) op.dispatch = parseDispatch(oa.dispatch.text, this.at(oa.dispatch.pos));
      f.body.push(op);
    }
    if (fa.ret.length !== fa.results.length) {
      this.fail(`@${fa.name} returns ${fa.ret.length} value(s) but its signature declares ${fa.results.length}`, fa.retPos);
    }
    fa.ret.forEach((r, i) => {
      const v = resolve(r);
      const declared = this.type(fa.results[i]!.type);
      if (!declared.equals(v.type)) this.fail(`returned value ${i} has type ${v.type} but the signature declares ${declared}`, r.pos);
      f.results.push({ name: fa.results[i]!.name, value: v });
    });
    return f;
  }

  module(ma: ModuleAst): Module {
    const m = new Module(ma.name);
    m.textPos = this.at(ma.pos);
    for (const a of ma.attrs) {
      if (Object.prototype.hasOwnProperty.call(m.attrs, a.key)) this.fail(`attribute '${a.key}' is given twice`, a.pos);
      m.attrs[a.key] = a.value;
    }
    const names = new Set<string>();
    for (const fa of ma.funcs) {
      if (names.has(fa.name)) this.fail(`function @${fa.name} is defined twice`, fa.pos);
      names.add(fa.name);
      m.functions.push(this.func(fa));
    }
    return m;
  }
}

export function buildModule(ast: ModuleAst, file: string): Module {
  return new Builder(file).module(ast);
}
