/**
 * Tracing: model code calls DSL ops on symbolic Tensors, and each call appends an op to the
 * function being traced. A layer is declared once with `module.fn(...)` and traced on its first
 * call; every later call (another layer of the same kind, with another weight scope) reuses the
 * traced function, so an 80-layer model traces three layer bodies. Weights are declared inside
 * functions by name, relative to the current scope (`attention.dense.weight`), and the call scope
 * (`model.layers.7`) completes the checkpoint name.
 */
import { Dim } from "../../ir/dim";
import { LingcError, OpError, type SourcePos } from "../../ir/errors";
import { Func, Module, Op, Value, joinScope, type Attrs } from "../../ir/module";
import type { DType } from "../../ir/dtype";
import { TensorType } from "../../ir/types";
import { inferOp, verifyModule } from "../../ir/verify";
import { callerLoc } from "./source-loc";

/** A symbolic tensor: a value of the function being traced. */
export class Tensor {
  constructor(readonly value: Value) {}

  get type(): TensorType {
    return this.value.type;
  }
  get shape() {
    return this.value.type.shape;
  }
  get dtype(): DType {
    return this.value.type.dtype;
  }
  get rank(): number {
    return this.value.type.rank;
  }

  /** Names this value (prefixed with the current scope) so dumps and observers can refer to it. */
  as(name: string): this {
    if (!/^[A-Za-z0-9_.]+$/.test(name)) throw new LingcError(`value name '${name}' may use only letters, digits, '_' and '.'`);
    this.value.name = joinScope(scopeOf(current()), name);
    return this;
  }
}

class FuncTrace {
  readonly scopes: string[] = [];
  readonly defined = new Set<Value>();
  readonly weights = new Map<string, Value>();
  constructor(
    readonly func: Func,
    readonly tracer: ModuleTracer,
  ) {}
}

const stack: FuncTrace[] = [];

function current(): FuncTrace {
  const t = stack[stack.length - 1];
  if (!t) throw new LingcError("DSL ops can only be used while a function is being traced (inside module.fn or module.entry)");
  return t;
}

function scopeOf(t: FuncTrace): string {
  return t.scopes.reduce(joinScope, "");
}

function located(e: unknown, loc: SourcePos | undefined): never {
  if (e instanceof OpError) throw new LingcError(e.message, loc);
  throw e;
}

/** Appends an op to the function being traced and returns its results. */
export function emit(opName: string, operands: readonly Tensor[], attrs: Attrs = {}, callee?: string): Tensor[] {
  const t = current();
  const loc = callerLoc();
  for (const x of operands) {
    if (!t.defined.has(x.value)) {
      throw new LingcError(`'${opName}' uses a tensor that belongs to another function (pass it as an argument instead)`, loc);
    }
  }
  const scope = scopeOf(t);
  const probe = new Op(opName, operands.map((x) => x.value), attrs, [], scope, loc, callee);
  let types: TensorType[];
  try {
    types = inferOp(probe, t.tracer.module);
  } catch (e) {
    located(e, loc);
  }
  const results = types.map((ty) => new Value(ty, undefined, "result"));
  t.func.body.push(new Op(opName, probe.operands, attrs, results, scope, loc, callee));
  for (const r of results) t.defined.add(r);
  return results.map((r) => new Tensor(r));
}

export function emit1(opName: string, operands: readonly Tensor[], attrs: Attrs = {}): Tensor {
  return emit(opName, operands, attrs)[0]!;
}

/** Runs `body` with `name` appended to the scope of the ops and weights it creates. */
export function scope<R>(name: string, body: () => R): R {
  const t = current();
  t.scopes.push(name);
  try {
    return body();
  } finally {
    t.scopes.pop();
  }
}

/** Declares (or reuses) a weight of the function being traced, named relative to the current scope. */
export function weight(name: string, shape: readonly number[], dtype: DType): Tensor {
  const t = current();
  const full = joinScope(scopeOf(t), name);
  const type = new TensorType(
    dtype,
    shape.map((d) => {
      if (!Number.isSafeInteger(d) || d < 0) throw new LingcError(`weight ${full}: invalid dimension ${d}`, callerLoc());
      return Dim.of(d);
    }),
  );
  const prev = t.weights.get(full);
  if (prev) {
    if (!prev.type.equals(type)) throw new LingcError(`weight ${full} is declared as ${prev.type} and as ${type}`, callerLoc());
    return new Tensor(prev);
  }
  const v = new Value(type, full, "weight");
  t.weights.set(full, v);
  t.func.weights.push(v);
  t.defined.add(v);
  return new Tensor(v);
}

export type Results = Record<string, Tensor>;
export type LayerFn = (scope: string, ...args: Tensor[]) => Results;

export class ModuleTracer {
  readonly module: Module;

  constructor(name: string, attrs: Record<string, string> = {}) {
    this.module = new Module(name);
    this.module.attrs = { ...attrs };
  }

  private trace(name: string, params: { name: string; type: TensorType }[], attrs: Record<string, string>, body: (...args: Tensor[]) => Results): Func {
    if (this.module.getFunc(name)) throw new LingcError(`function @${name} is defined twice`, callerLoc());
    const f = new Func(name);
    f.attrs = { ...attrs };
    const t = new FuncTrace(f, this);
    const args = params.map((p) => {
      const v = new Value(p.type, p.name, "param");
      f.params.push(v);
      t.defined.add(v);
      return new Tensor(v);
    });
    stack.push(t);
    try {
      const out = body(...args);
      const entries = Object.entries(out);
      if (entries.length === 0) throw new LingcError(`@${name} returns nothing`, callerLoc());
      for (const [k, v] of entries) {
        if (!t.defined.has(v.value)) throw new LingcError(`@${name} returns '${k}', a tensor of another function`, callerLoc());
        f.results.push({ name: k, value: v.value });
      }
    } finally {
      stack.pop();
    }
    this.module.functions.push(f);
    return f;
  }

  /**
   * Declares a function (a layer kind). It is traced at its first call, with parameter types taken
   * from that call's arguments; every call emits a `call` op whose scope prefixes the callee's weights.
   */
  fn(name: string, paramNames: readonly string[], attrs: Record<string, string>, body: (...args: Tensor[]) => Results): LayerFn {
    let traced: Func | undefined;
    return (callScope: string, ...args: Tensor[]): Results => {
      if (args.length !== paramNames.length) {
        throw new LingcError(`@${name} takes ${paramNames.length} arguments (${paramNames.join(", ")}), got ${args.length}`, callerLoc());
      }
      traced ??= this.trace(
        name,
        paramNames.map((p, i) => ({ name: p, type: args[i]!.type })),
        attrs,
        body,
      );
      const outs = scope(callScope, () => emit("call", args, {}, name));
      const res: Results = {};
      traced.results.forEach((r, i) => (res[r.name!] = outs[i]!));
      return res;
    };
  }

  /** Traces the graph's entry function (named like the module by convention). */
  entry(name: string, params: Record<string, TensorType>, body: (inputs: Record<string, Tensor>) => Results): Func {
    const names = Object.keys(params);
    return this.trace(
      name,
      names.map((n) => ({ name: n, type: params[n]! })),
      {},
      (...args) => body(Object.fromEntries(names.map((n, i) => [n, args[i]!]))),
    );
  }

  /** The traced module, verified. */
  finish(): Module {
    verifyModule(this.module);
    return this.module;
  }
}
