/**
 * fusion: groups ops into kernels and records the plan in the IR.
 * Guarantees: each group of ops that a target runs as one kernel is outlined into its own function
 * (attributes {role = "kernel", fusion = "<kind>"}) and called from where the group stood, so the
 * dump shows every kernel by name with its ops, inputs (parameters, weights) and outputs (results).
 * Ops keep their scopes and source locations; the call has scope "" so weight names and observed
 * value names are unchanged, and the module computes exactly what it computed before. Ops left
 * outside any group run as kernels of their own (reshape and constant cost nothing).
 *
 * Fusions, each switchable off by name (`--no-fuse=NAME`, or `all`):
 *   router        the whole MoE router: fp32 logits, sigmoid, bias, group-limited top-k, weights
 *   qk_norm_rope  the head split of the fused QKV projection, QK RMSNorm and partial RoPE
 *   attention     attention with its output transpose (writes [B, S, heads*d] directly)
 *   swiglu        silu(gate(x)) * up(x): both projections and the product in one kernel; for experts
 *                 the token gather (moe_permute) becomes the kernel's prologue
 *   residual_norm a residual add and the RMSNorm of its result
 *   norm_matmul   an RMSNorm into the prologue of its only consumer, a linear layer, when one
 *                 normalized row fits the target's workgroup memory
 *   elementwise   elementwise ops into the producing matmul's epilogue, and elementwise chains
 */
import { Func, Module, Op, Value } from "../../ir/module";
import { LingcError } from "../../ir/errors";
import type { Pass, PassContext } from "./pass";

export const FUSIONS = ["router", "qk_norm_rope", "attention", "swiglu", "residual_norm", "norm_matmul", "elementwise"] as const;
export type FusionName = (typeof FUSIONS)[number];

export const ELEMENTWISE_OPS = new Set(["neg", "abs", "exp", "log", "sqrt", "rsqrt", "sigmoid", "silu", "cos", "sin", "add", "sub", "mul", "div", "maximum", "minimum", "cast"]);
/** Ops that need no kernel: a reshape is a view, a constant is data. */
export const FREE_OPS = new Set(["reshape", "constant"]);
const MATMUL_LIKE = new Set(["linear", "matmul", "grouped_linear", "moe_combine"]);
/** Ops a GEMM library runs when the target has one (see PassContext.libraryMatmuls). */
const LIBRARY_MATMULS = new Set(["linear", "matmul", "grouped_linear"]);

export function checkFusionNames(names: Iterable<string>): void {
  for (const n of names) {
    if (n !== "all" && !(FUSIONS as readonly string[]).includes(n)) throw new LingcError(`unknown fusion '${n}' (fusions: ${FUSIONS.join(", ")}, or all)`);
  }
}

interface Group {
  kind: string;
  ops: Set<Op>;
}

class FunctionFuser {
  readonly index = new Map<Op, number>();
  readonly users = new Map<Value, Op[]>();
  readonly returned: Set<Value>;
  readonly owner = new Map<Op, Group>();
  readonly groups: Group[] = [];

  constructor(
    readonly f: Func,
    readonly ctx: PassContext,
  ) {
    f.body.forEach((op, i) => {
      this.index.set(op, i);
      for (const v of op.operands) this.users.set(v, [...(this.users.get(v) ?? []), op]);
    });
    this.returned = new Set(f.results.map((r) => r.value));
  }

  on(name: FusionName): boolean {
    return !this.ctx.disabledFusions.has(name) && !this.ctx.disabledFusions.has("all");
  }

  /** The op of this function that defines v (undefined for parameters and weights). */
  def(v: Value): Op | undefined {
    return v.def && this.index.has(v.def) ? v.def : undefined;
  }

  /** The only user of v, when v has exactly one and is not returned. */
  only(v: Value): Op | undefined {
    const u = this.users.get(v);
    return !this.returned.has(v) && u?.length === 1 ? u[0] : undefined;
  }

  free(op: Op | undefined): op is Op {
    return op !== undefined && !this.owner.has(op);
  }

  /** A group can become one call placed where its last op stood if no outside op reads its results earlier. */
  valid(ops: Set<Op>): boolean {
    const last = Math.max(...[...ops].map((o) => this.index.get(o)!));
    for (const op of ops) {
      for (const r of op.results) {
        for (const u of this.users.get(r) ?? []) if (!ops.has(u) && this.index.get(u)! < last) return false;
      }
    }
    return true;
  }

  add(kind: string, ops: Op[]): Group | undefined {
    const set = new Set(ops);
    if (set.size < 2 || [...set].some((o) => this.owner.has(o)) || !this.valid(set)) return undefined;
    const g = { kind, ops: set };
    this.groups.push(g);
    for (const o of set) this.owner.set(o, g);
    return g;
  }

  extend(g: Group, op: Op): boolean {
    if (this.owner.has(op)) return false;
    const set = new Set([...g.ops, op]);
    if (!this.valid(set)) return false;
    g.ops.add(op);
    this.owner.set(op, g);
    return true;
  }

  router(): void {
    for (const gt of this.f.body.filter((o) => o.opName === "group_topk" && this.free(o))) {
      const ops = new Set<Op>([gt]);
      // Backward: the selection scores' producers (bias add, sigmoid, the fp32 logits and their casts).
      const back = (v: Value, throughLinear: boolean) => {
        const p = this.def(v);
        if (!this.free(p) || ops.has(p)) return;
        const kinds = throughLinear ? ["add", "sigmoid", ...(this.ctx.libraryMatmuls ? [] : ["linear", "cast"])] : ["cast"];
        if (!kinds.includes(p.opName)) return;
        ops.add(p);
        for (const o of p.operands) back(o, throughLinear && p.opName !== "linear");
      };
      back(gt.operands[0]!, true);
      // Forward: everything computed from the group's values alone (gathering, normalizing, scaling).
      const start = this.index.get(gt)!;
      let grew = true;
      while (grew) {
        grew = false;
        for (const op of this.f.body.slice(start + 1)) {
          if (ops.has(op) || !this.free(op) || !["take_along", "reduce_sum", "add", "div", "mul", "cast"].includes(op.opName)) continue;
          const inside = op.operands.every((v) => {
            const p = this.def(v);
            return p !== undefined && (ops.has(p) || (p.opName === "constant" && this.free(p)));
          });
          if (!inside) continue;
          for (const v of op.operands) ops.add(this.def(v)!);
          ops.add(op);
          grew = true;
        }
      }
      this.add("router", [...ops]);
    }
  }

  qkNormRope(): void {
    for (const r of this.f.body.filter((o) => o.opName === "reshape" && this.free(o))) {
      const slices = this.users.get(r.results[0]!) ?? [];
      if (slices.length < 2 || !slices.every((s) => s.opName === "slice" && s.attrs["axis"] === 2)) continue;
      const ops: Op[] = [r];
      let ok = true;
      for (const s of slices) {
        const t = this.only(s.results[0]!);
        if (!t || t.opName !== "transpose") {
          ok = false;
          break;
        }
        ops.push(s, t);
        let cur = this.only(t.results[0]!);
        while (cur && (cur.opName === "rms_norm" || cur.opName === "rope") && this.free(cur)) {
          ops.push(cur);
          cur = this.only(cur.results[0]!);
        }
      }
      if (ok) this.add("qk_norm_rope", ops);
    }
  }

  attention(): void {
    for (const a of this.f.body.filter((o) => o.opName === "attention" && this.free(o))) {
      const t = this.only(a.results[0]!);
      if (t?.opName !== "transpose") continue;
      const r = this.only(t.results[0]!);
      this.add("attention", r?.opName === "reshape" ? [a, t, r] : [a, t]);
    }
  }

  swiglu(): void {
    for (const m of this.f.body.filter((o) => o.opName === "mul" && this.free(o))) {
      const s = this.def(m.operands[0]!);
      const up = this.def(m.operands[1]!);
      if (s?.opName !== "silu" || this.only(s.results[0]!) !== m) continue;
      const gate = this.def(s.operands[0]!);
      if (!gate || !up || gate.opName !== up.opName || !["linear", "grouped_linear"].includes(gate.opName)) continue;
      if (gate.opName === "linear" && this.ctx.libraryMatmuls) continue;
      if (this.only(gate.results[0]!) !== s || this.only(up.results[0]!) !== m) continue;
      if (gate.operands[0] !== up.operands[0] || (gate.opName === "grouped_linear" && gate.operands[2] !== up.operands[2])) continue;
      const ops = [gate, up, s, m];
      const perm = this.def(gate.operands[0]!);
      const permUsers = perm ? this.users.get(perm.results[0]!) ?? [] : [];
      if (perm?.opName === "moe_permute" && !this.returned.has(perm.results[0]!) && permUsers.every((u) => u === gate || u === up)) ops.unshift(perm);
      this.add("swiglu", ops);
    }
  }

  residualNorm(): void {
    for (const n of this.f.body.filter((o) => o.opName === "rms_norm" && this.free(o))) {
      const a = this.def(n.operands[0]!);
      if (a?.opName === "add" && this.free(a)) this.add("residual_norm", [a, n]);
    }
  }

  normMatmul(): void {
    if (this.ctx.libraryMatmuls) return;
    for (const n of this.f.body.filter((o) => o.opName === "rms_norm" && this.free(o))) {
      const l = this.only(n.results[0]!);
      if (l?.opName !== "linear" || !this.free(l) || l.operands[0] !== n.results[0]) continue;
      const row = n.results[0]!.type.shape[n.results[0]!.type.rank - 1]!.value;
      if (row === undefined || (this.ctx.maxWorkgroupBytes !== undefined && row * 4 > this.ctx.maxWorkgroupBytes)) continue;
      this.add("norm_matmul", [n, l]);
    }
  }

  elementwise(): void {
    for (const e of this.f.body) {
      if (!ELEMENTWISE_OPS.has(e.opName) || !this.free(e)) continue;
      const shape = e.results[0]!.type.toString();
      for (const v of e.operands) {
        const p = this.def(v);
        if (!p || this.only(v) !== e || FREE_OPS.has(p.opName) || v.type.withDtype(e.results[0]!.type.dtype).toString() !== shape) continue;
        const g = this.owner.get(p);
        if (g) {
          // Extend an elementwise or matmul-epilogue group whose output this is.
          if ((g.kind === "elementwise" || g.kind === "epilogue") && this.extend(g, e)) break;
          continue;
        }
        if (ELEMENTWISE_OPS.has(p.opName) && this.add("elementwise", [p, e])) break;
        if (MATMUL_LIKE.has(p.opName) && !(this.ctx.libraryMatmuls && LIBRARY_MATMULS.has(p.opName)) && this.add("epilogue", [p, e])) break;
      }
    }
  }

  run(): Group[] {
    if (this.on("router")) this.router();
    if (this.on("qk_norm_rope")) this.qkNormRope();
    if (this.on("attention")) this.attention();
    if (this.on("swiglu")) this.swiglu();
    if (this.on("residual_norm")) this.residualNorm();
    if (this.on("norm_matmul")) this.normMatmul();
    if (this.on("elementwise")) this.elementwise();
    return this.groups;
  }
}

/** Moves a group's ops into a new kernel function and puts a call in their place. */
function outline(m: Module, f: Func, g: Group, name: string): void {
  const ops = f.body.filter((o) => g.ops.has(o));
  const kernel = new Func(name);
  kernel.attrs = { role: "kernel", fusion: g.kind };
  const inner = new Map<Value, Value>();
  const args: Value[] = [];
  const defined = new Set(ops.flatMap((o) => o.results));
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
  const rest = f.body.filter((o) => !g.ops.has(o));
  const outside = new Set(rest.flatMap((o) => o.operands));
  const returned = new Set(f.results.map((r) => r.value));
  const outputs = ops.flatMap((o) => o.results).filter((r) => outside.has(r) || returned.has(r));
  const resultNames = new Set<string>();
  kernel.results = outputs.map((r, i) => {
    let n = r.name ?? `out${i}`;
    if (resultNames.has(n)) n = `${n}_${i}`;
    resultNames.add(n);
    return { name: n, value: r };
  });
  const last = ops[ops.length - 1]!;
  const callResults = outputs.map((r) => new Value(r.type, undefined, "result"));
  const call = new Op("call", args, {}, callResults, "", last.loc, name);
  const replace = new Map(outputs.map((r, i) => [r, callResults[i]!]));
  for (const op of rest) op.operands = op.operands.map((v) => replace.get(v) ?? v);
  f.results = f.results.map((r) => ({ name: r.name, value: replace.get(r.value) ?? r.value }));
  const at = f.body.indexOf(last);
  f.body = [...f.body.slice(0, at).filter((o) => !g.ops.has(o)), call, ...f.body.slice(at + 1)];
  m.functions.splice(m.functions.indexOf(f), 0, kernel);
}

export const fusion: Pass = {
  name: "fusion",
  summary: "groups ops into kernels (router, qk_norm_rope, attention, swiglu, residual_norm, norm_matmul, elementwise) and outlines each into a kernel function",
  run(m: Module, ctx: PassContext) {
    checkFusionNames(ctx.disabledFusions);
    for (const f of [...m.functions]) {
      if (f.role === "kernel") continue;
      const groups = new FunctionFuser(f, ctx).run();
      const count = new Map<string, number>();
      // Outline in program order so kernel names read top to bottom.
      groups.sort((a, b) => Math.min(...[...a.ops].map((o) => f.body.indexOf(o))) - Math.min(...[...b.ops].map((o) => f.body.indexOf(o))));
      for (const g of groups) {
        const n = count.get(g.kind) ?? 0;
        count.set(g.kind, n + 1);
        outline(m, f, g, `${f.name}.${g.kind}${n ? `.${n}` : ""}`);
      }
    }
  },
};
