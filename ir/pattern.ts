/**
 * Patterns as data and a greedy driver that applies them (tinygrad's PatternMatcher, MLIR's DRR and
 * greedy rewrite driver). A pattern is a tree of op matchers over a function's dataflow:
 *
 *   P.op("mul", [P.op("silu", [P.op("linear", [P.any("x"), P.any("wg")], { bind: "gate", oneUse: true })]), P.op("linear", [P.same("x"), P.any("wu")])])
 *
 * matches `silu(linear(x, wg)) * linear(x, wu)` with one x, binding the ops and values by name. A
 * rewrite pattern pairs a root matcher with an action; the action may rewrite the IR (through the
 * rewrite core) or only record something (the fusion pass records kernel groups). The driver sweeps
 * the function once per pattern, in the table's order, and repeats until nothing applies.
 */
import { LingcError } from "./errors";
import type { Func, Module, Op, Value } from "./module";
import { hasTrait, type Trait } from "./ops";
import { Uses } from "./rewrite";

export type ValuePat =
  | { kind: "any"; bind?: string }
  | { kind: "same"; bind: string }
  | OpPat;

export interface OpPat {
  kind: "op";
  /** Op names (empty: any op), or a trait the op must have. */
  names: readonly string[];
  trait?: Trait;
  /** Operand patterns; when given, the op must have exactly this many operands. Extra operands are unconstrained if `rest`. */
  operands?: readonly ValuePat[];
  rest?: boolean;
  /** Bind the matched op under this name (and its first result under the same name). */
  bind?: string;
  /** The op's results must be read by exactly one op and not returned (so it can be absorbed). */
  oneUse?: boolean;
  /** A final condition on the op. */
  where?: (op: Op, m: Match) => boolean;
}

export interface OpPatOptions {
  bind?: string;
  oneUse?: boolean;
  rest?: boolean;
  where?: (op: Op, m: Match) => boolean;
}

/** Builders for patterns. */
export const P = {
  /** Any value (a parameter, a weight, or any op's result), bound under `bind` when given. */
  any: (bind?: string): ValuePat => ({ kind: "any", bind }),
  /** The value already bound under `bind` (the same SSA value). */
  same: (bind: string): ValuePat => ({ kind: "same", bind }),
  /** An op named `names` (one name or several) whose operands match `operands`. */
  op: (names: string | readonly string[], operands?: readonly ValuePat[], opts: OpPatOptions = {}): OpPat => ({
    kind: "op",
    names: typeof names === "string" ? [names] : names,
    operands,
    ...opts,
  }),
  /** An op with trait t. */
  trait: (t: Trait, operands?: readonly ValuePat[], opts: OpPatOptions = {}): OpPat => ({ kind: "op", names: [], trait: t, operands, ...opts }),
};

/** What a match bound: ops and values by name, and every op the pattern matched. */
export class Match {
  readonly ops = new Map<string, Op>();
  readonly values = new Map<string, Value>();
  readonly matched: Op[] = [];

  op(name: string): Op {
    const o = this.ops.get(name);
    if (!o) throw new LingcError(`pattern: nothing is bound as op '${name}'`);
    return o;
  }

  value(name: string): Value {
    const v = this.values.get(name);
    if (!v) throw new LingcError(`pattern: nothing is bound as value '${name}'`);
    return v;
  }

  clone(): Match {
    const m = new Match();
    for (const [k, v] of this.ops) m.ops.set(k, v);
    for (const [k, v] of this.values) m.values.set(k, v);
    m.matched.push(...this.matched);
    return m;
  }
}

function matchOp(p: OpPat, op: Op, uses: Uses, m: Match): boolean {
  if (p.names.length && !p.names.includes(op.opName)) return false;
  if (p.trait && !hasTrait(op.opName, p.trait)) return false;
  if (p.oneUse && !op.results.every((r) => uses.only(r) !== undefined)) return false;
  if (p.operands) {
    if (p.rest ? op.operands.length < p.operands.length : op.operands.length !== p.operands.length) return false;
    for (let i = 0; i < p.operands.length; i++) if (!matchValue(p.operands[i]!, op.operands[i]!, uses, m)) return false;
  }
  if (p.bind) {
    const prev = m.ops.get(p.bind);
    if (prev && prev !== op) return false;
    m.ops.set(p.bind, op);
    m.values.set(p.bind, op.results[0]!);
  }
  if (!m.matched.includes(op)) m.matched.push(op);
  return !p.where || p.where(op, m);
}

function matchValue(p: ValuePat, v: Value, uses: Uses, m: Match): boolean {
  switch (p.kind) {
    case "any":
      if (p.bind) {
        const prev = m.values.get(p.bind);
        if (prev && prev !== v) return false;
        m.values.set(p.bind, v);
      }
      return true;
    case "same":
      return m.values.get(p.bind) === v;
    case "op": {
      const def = uses.def(v);
      return def !== undefined && matchOp(p, def, uses, m);
    }
  }
}

/** Matches `p` with `op` as its root; undefined when it does not match. */
export function match(p: OpPat, op: Op, uses: Uses): Match | undefined {
  const m = new Match();
  return matchOp(p, op, uses, m) ? m : undefined;
}

export interface PatternContext {
  module: Module;
  func: Func;
  /** Use lists of the function as it is now (recomputed after each application). */
  uses: Uses;
}

export interface RewritePattern {
  name: string;
  root: OpPat;
  /**
   * Acts on a match: rewrites the IR or records something. Returns false when it declines (the
   * driver then tries the next op). An action that changes the function must return true.
   */
  apply(m: Match, ctx: PatternContext): boolean;
}

export interface DriverOptions {
  /** Sweeps over the whole table before giving up on reaching a fixpoint (default 10). */
  maxSweeps?: number;
}

/**
 * Applies the patterns to f until none applies: for each pattern in table order, every op of the
 * function in program order is tried as its root; the whole table is swept again while anything
 * applied. Returns how many times patterns applied.
 */
export function applyPatterns(m: Module, f: Func, patterns: readonly RewritePattern[], opts: DriverOptions = {}): number {
  const max = opts.maxSweeps ?? 10;
  let applied = 0;
  for (let sweep = 0; ; sweep++) {
    if (sweep === max) throw new LingcError(`the patterns (${patterns.map((p) => p.name).join(", ")}) did not reach a fixpoint on @${f.name} in ${max} sweeps`);
    let changed = false;
    for (const p of patterns) {
      let ctx: PatternContext = { module: m, func: f, uses: new Uses(f) };
      for (const op of [...f.body]) {
        if (ctx.uses.indexOf(op) === undefined) continue; // erased by an earlier application
        const hit = match(p.root, op, ctx.uses);
        if (!hit || !p.apply(hit, ctx)) continue;
        applied++;
        changed = true;
        ctx = { module: m, func: f, uses: new Uses(f) };
      }
    }
    if (!changed) return applied;
  }
}
