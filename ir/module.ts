/**
 * The IR's structure: a Module holds Functions; a Function has parameters (activations), weight
 * parameters (named like checkpoint tensors, relative to the function's call scope), a straight-line
 * body of Ops in SSA form and named results. A `call` op runs another function with a scope: the
 * scope both names where the call's ops come from (`model.layers.7`) and prefixes the callee's
 * weight names, so one function serves every layer of its kind (DESIGN principle 5).
 */
import type { Dim } from "./dim";
import type { SourcePos } from "./errors";
import type { TensorType } from "./types";
import type { Dispatch } from "./dispatch";

/** An attribute value; the op table says which kind each attribute has. */
export type AttrValue = number | boolean | string | Dim | readonly number[] | readonly Dim[];
export type Attrs = Record<string, AttrValue>;

export type ValueKind = "param" | "weight" | "result";

export class Value {
  /** Set for results: the op that defines this value. */
  def: Op | undefined;
  constructor(
    public type: TensorType,
    public name: string | undefined,
    readonly kind: ValueKind,
  ) {}
}

export class Op {
  constructor(
    /** The op table name, or "call". */
    readonly opName: string,
    public operands: Value[],
    public attrs: Attrs,
    public results: Value[],
    /** Checkpoint-style scope relative to the enclosing function (for calls: the callee's weight prefix). */
    public scope: string,
    /** Where the DSL created this op (models/ling2.ts:88:13). Kept through every pass. */
    public loc: SourcePos | undefined,
    /** For calls: the callee's name. */
    readonly callee?: string,
  ) {
    for (const r of results) r.def = this;
  }

  /** Where this op was read from, when it came from an IR text (used for error messages). */
  textPos: SourcePos | undefined;

  /** The kernels a target runs this op (or kernel call) with, and when (ir/dispatch.ts); set by kernel selection. */
  dispatch: Dispatch | undefined;

  /**
   * This op reading other values: a view for a merged kernel whose later op reads an earlier op's
   * result under the name its own kernel gave it. Its results stay this op's (their def unchanged).
   */
  rebound(operands: Value[]): Op {
    return Object.assign(Object.create(Op.prototype) as Op, this, { operands });
  }
}

export interface FuncResult {
  name: string | undefined;
  value: Value;
}

export class Func {
  params: Value[] = [];
  /** Weight parameters; a name containing `.*.` is stacked over its first axis (one slice per expert). */
  weights: Value[] = [];
  body: Op[] = [];
  results: FuncResult[] = [];
  attrs: Record<string, string> = {};
  textPos: SourcePos | undefined;

  constructor(public name: string) {}

  get role(): string | undefined {
    return this.attrs["role"];
  }
}

export class Module {
  functions: Func[] = [];
  attrs: Record<string, string> = {};
  textPos: SourcePos | undefined;

  constructor(public name: string) {}

  getFunc(name: string): Func | undefined {
    return this.functions.find((f) => f.name === name);
  }

  /** The function named like the module (`forward`, `decode`): the graph's entry point. */
  get entry(): Func | undefined {
    return this.getFunc(this.name);
  }
}

/** The functions `root` reaches through calls (root included), in the module's order. */
export function reachableFunctions(m: Module, root: Func): Func[] {
  const seen = new Set<string>();
  const visit = (g: Func) => {
    if (seen.has(g.name)) return;
    seen.add(g.name);
    for (const op of g.body) {
      const callee = op.opName === "call" ? m.getFunc(op.callee!) : undefined;
      if (callee) visit(callee);
    }
  };
  visit(root);
  return m.functions.filter((g) => seen.has(g.name));
}

/** The separator between a call scope and the names inside it. */
export function joinScope(prefix: string, name: string): string {
  if (!prefix) return name;
  if (!name) return prefix;
  return `${prefix}.${name}`;
}

/** Whether a weight name is stacked over experts (`mlp.experts.*.gate_proj.weight`). */
export function isStackedWeight(name: string): boolean {
  return name.includes(".*.");
}
