/**
 * The fusion pattern table: each entry matches a subgraph by its root and names the ops that become
 * one kernel; one generic action records the group (an op joins at most one group, and a group must
 * be outlinable: no outside op may read its results before its last op). Entries run in table order,
 * so earlier ones claim their ops first:
 *
 *   router        the whole MoE router: fp32 logits (not where matmuls run in a library or as
 *                 tiles), sigmoid, bias, group-limited top-k, weights
 *   qk_norm_rope  the head split of the fused QKV projection, QK RMSNorm and partial RoPE, and the
 *                 KV cache appends of the new keys and values (written in place)
 *   attention     attention with its output transpose (and the reshape after it)
 *   swiglu        silu(gate(x)) * up(x); for experts with the token gather (moe_permute) as prologue;
 *                 where matmuls run in a library, of linears only as a group it runs (KernelLimits.libraryRuns)
 *   quantize      an activation quantization with the token gather before it (moe_permute) as its
 *                 prologue (the gathered rows are quantized as they are read, never stored wide);
 *                 and, after the norm patterns, one of an RMSNorm's row (joining its residual_norm
 *                 group, or with the norm alone) when the row fits the target's workgroup memory
 *   residual_norm a residual add and the RMSNorm of its result (and, by the elementwise entry, a float
 *                 cast of the normalized row: the MoE router's fp32 input)
 *   norm_matmul   an RMSNorm into the prologue of its only consumer, a linear layer, when one
 *                 normalized row fits the target's workgroup memory (not where dense matmuls are
 *                 tiled: KernelLimits.tiledMatmuls)
 *   elementwise   an elementwise op into its producer's group: an elementwise chain, or a matmul's
 *                 (or the MoE combine's, through a reshape) epilogue (group label "epilogue")
 */
import type { Func, Op, Value } from "../../ir/module";
import { isFloat } from "../../ir/dtype";
import { attrsOf, hasTrait, normAxis, OPS } from "../../ir/ops";
import { Match, P, type OpPat, type PatternContext, type RewritePattern } from "../../ir/pattern";
import type { KernelLimits } from "../../ir/target";
import type { Uses } from "../../ir/rewrite";

export const FUSIONS = ["router", "qk_norm_rope", "attention", "swiglu", "quantize", "residual_norm", "norm_matmul", "elementwise"] as const;
export type FusionName = (typeof FUSIONS)[number];

export interface Group {
  kind: string;
  ops: Set<Op>;
}

/** The groups found so far in one function, and which group (by kind) owns each op. */
export interface Grouping {
  owner: Map<Op, string>;
  groups: Group[];
}

/** What a pattern claims: a new group of ops (labelled `kind`, default the pattern's name), or ops that join `extend`. */
interface Claim {
  ops: Op[];
  kind?: string;
  extend?: Group;
}

interface FusionPattern {
  fusion: FusionName;
  root: OpPat;
  /** The group (default: every op the pattern matched), or undefined to decline. */
  collect?(m: Match, ctx: PatternContext): Claim | Op[] | undefined;
}

/**
 * A group can become one call placed where its last op stood if no outside op reads its results
 * earlier, and if each in_place op it holds grows storage from outside the group (a parameter of
 * the kernel function, whose result the schedule then keeps as that argument's storage:
 * backends/schedule.ts kernelResultSlot); storage made inside the group would be the kernel's own.
 */
function outlinable(ops: Set<Op>, uses: Uses): boolean {
  for (const op of ops) {
    const p = hasTrait(op.opName, "in_place") ? uses.def(op.operands[0]!) : undefined;
    if (p !== undefined && ops.has(p)) return false;
  }
  const last = Math.max(...[...ops].map((o) => uses.indexOf(o)!));
  for (const op of ops) {
    for (const r of op.results) for (const u of uses.of(r)) if (!ops.has(u) && uses.indexOf(u)! < last) return false;
  }
  return true;
}

const isFree = (g: Grouping, op: Op | undefined): op is Op => op !== undefined && !g.owner.has(op);

/** The patterns, in order, for a target with these limits (undefined: none), minus the disabled ones. */
export function fusionPatterns(g: Grouping, limits: KernelLimits | undefined, disabled: ReadonlySet<string>): RewritePattern[] {
  const libraryMatmuls = limits?.libraryMatmuls ?? false;
  const table: FusionPattern[] = [
    {
      fusion: "router",
      root: P.op("group_topk"),
      // Where matmuls run in a library or as tiles (and gemvs over many workgroups), the logits are
      // that matmul's: inside the router they are one workgroup's GEMV per token (on the H200
      // through WebGPU, 0.46 ms a decode step's layer).
      collect: (m, { func, uses }) => routerGroup(m.matched[0]!, func, uses, g, libraryMatmuls || limits?.tiledMatmuls === true),
    },
    {
      fusion: "qk_norm_rope",
      root: P.op("reshape"),
      collect: (m, { uses }) => qkNormRopeGroup(m.matched[0]!, uses, g),
    },
    { fusion: "attention", root: P.op("reshape", [P.op("transpose", [P.op("attention", undefined, { oneUse: true })], { oneUse: true })]) },
    { fusion: "attention", root: P.op("transpose", [P.op("attention", undefined, { oneUse: true })]) },
    {
      fusion: "swiglu",
      root: P.op("mul", [
        P.op("silu", [P.op(["linear", "grouped_linear"], [P.any("x"), P.any("wg")], { bind: "gate", oneUse: true, rest: true })], { oneUse: true }),
        P.op(["linear", "grouped_linear"], [P.same("x"), P.any("wu")], { bind: "up", oneUse: true, rest: true }),
      ]),
      collect(m, { uses }) {
        const gate = m.op("gate");
        const up = m.op("up");
        if (gate.opName !== up.opName || gate.operands[2] !== up.operands[2]) return undefined;
        // Where matmuls run in a library, only as a group the library runs as one step (the CUDA
        // runtime's dense SwiGLU of two plain unquantized linears: one launch at one row, where three ran).
        if (gate.opName === "linear" && libraryMatmuls && !limits?.libraryRuns?.(m.matched)) return undefined;
        // The experts' token gather becomes the kernel's prologue when only these two read it.
        const perm = uses.def(m.value("x"));
        const prologue = perm?.opName === "moe_permute" && !uses.isReturned(perm.results[0]!) && uses.of(perm.results[0]!).every((u) => u === gate || u === up);
        return prologue ? [perm!, ...m.matched] : m.matched;
      },
    },
    {
      fusion: "quantize",
      root: P.op("quantize", [P.op("moe_permute", undefined, { oneUse: true })]),
      collect: (m, { uses }) => (uses.isReturned(m.matched[1]!.results[0]!) ? undefined : m.matched),
    },
    { fusion: "residual_norm", root: P.op("rms_norm", [P.op("add"), P.any()]) },
    {
      fusion: "norm_matmul",
      root: P.op("linear", [P.op("rms_norm", undefined, { bind: "norm", oneUse: true }), P.any()]),
      collect(m) {
        if (libraryMatmuls || limits?.tiledMatmuls) return undefined;
        const t = m.value("norm").type;
        const row = t.shape[t.rank - 1]!.value;
        if (row === undefined || (limits !== undefined && row * 4 > limits.sharedMemoryBytes)) return undefined;
        return m.matched;
      },
    },
    {
      fusion: "quantize",
      root: P.op("quantize", [P.op("rms_norm", undefined, { bind: "norm" })], { bind: "q" }),
      collect(m) {
        const q = m.op("q");
        const norm = m.op("norm");
        const { block, recipe } = attrsOf(OPS.quantize, q);
        // The row kernel makes codes by dividing by the group's scale: per-token groups, a dividing recipe.
        if (block[0] !== 1 || recipe === "transformers") return undefined;
        const row = norm.results[0]!.type.shape.at(-1)!.value;
        if (row === undefined || (limits !== undefined && (row + 2 * 256) * 4 > limits.sharedMemoryBytes)) return undefined;
        const owner = g.groups.find((x) => x.ops.has(norm));
        if (!owner) return [norm, q];
        return owner.kind === "residual_norm" ? { ops: [q], extend: owner } : undefined;
      },
    },
    {
      fusion: "elementwise",
      root: P.trait("elementwise"),
      collect: (m, { uses }) => elementwiseJoin(m.matched[0]!, uses, g, libraryMatmuls),
    },
  ];
  return table
    .filter((p) => !disabled.has(p.fusion) && !disabled.has("all"))
    .map((p) => ({
      name: p.fusion,
      root: p.root,
      apply(m, ctx) {
        // The root (matched last) must be free; a claim that takes an owned op is refused by record().
        if (!isFree(g, m.matched[m.matched.length - 1])) return false;
        const c = p.collect ? p.collect(m, ctx) : m.matched;
        if (!c) return false;
        return record(g, Array.isArray(c) ? { ops: c } : c, p.fusion, ctx.uses);
      },
    }));
}

/** Records a claim: a new group, or more ops for an existing one. */
function record(g: Grouping, c: Claim, fusion: FusionName, uses: Uses): boolean {
  if (c.ops.some((o) => g.owner.has(o))) return false;
  if (c.extend) {
    if (!outlinable(new Set([...c.extend.ops, ...c.ops]), uses)) return false;
    for (const o of c.ops) {
      c.extend.ops.add(o);
      g.owner.set(o, c.extend.kind);
    }
    return true;
  }
  const set = new Set(c.ops);
  if (set.size < 2 || !outlinable(set, uses)) return false;
  const kind = c.kind ?? fusion;
  g.groups.push({ kind, ops: set });
  for (const o of set) g.owner.set(o, kind);
  return true;
}

/**
 * The router: backward from group_topk through the selection scores' producers (bias add, sigmoid,
 * and, unless matmuls run elsewhere, the fp32 logits and the casts into them), then forward
 * through everything computed from the group's values alone (gathering, normalizing, scaling).
 */
function routerGroup(gt: Op, f: Func, uses: Uses, g: Grouping, matmulsElsewhere: boolean): Op[] {
  const ops = new Set<Op>([gt]);
  const back = (v: Value, throughLinear: boolean) => {
    const p = uses.def(v);
    if (!isFree(g, p) || ops.has(p)) return;
    const kinds = throughLinear ? ["add", "sigmoid", ...(matmulsElsewhere ? [] : ["linear", "cast"])] : ["cast"];
    if (!kinds.includes(p.opName)) return;
    ops.add(p);
    for (const o of p.operands) back(o, throughLinear && p.opName !== "linear");
  };
  back(gt.operands[0]!, true);
  const start = uses.indexOf(gt)!;
  let grew = true;
  while (grew) {
    grew = false;
    for (const op of f.body.slice(start + 1)) {
      if (ops.has(op) || !isFree(g, op) || !["take_along", "reduce_sum", "add", "div", "mul", "cast"].includes(op.opName)) continue;
      const inside = op.operands.every((v) => {
        const p = uses.def(v);
        return p !== undefined && (ops.has(p) || (p.opName === "constant" && isFree(g, p)));
      });
      if (!inside) continue;
      for (const v of op.operands) ops.add(uses.def(v)!);
      ops.add(op);
      grew = true;
    }
  }
  return [...ops];
}

/**
 * The QKV head split: a reshape to heads read only by slices along the head axis, each slice read
 * only by a transpose to [B, heads, S, d], then each chain's single-use RMSNorms and RoPEs and the
 * cache append (along the sequence axis) that is the chain's only reader.
 */
function qkNormRopeGroup(r: Op, uses: Uses, g: Grouping): Op[] | undefined {
  const slices = uses.of(r.results[0]!);
  if (uses.isReturned(r.results[0]!) || slices.length < 2 || !slices.every((s) => s.opName === "slice" && attrsOf(OPS.slice, s).axis === 2)) return undefined;
  const ops: Op[] = [r];
  for (const s of slices) {
    const t = uses.only(s.results[0]!);
    if (!t || t.opName !== "transpose") return undefined;
    ops.push(s, t);
    let last = t.results[0]!;
    let cur = uses.only(last);
    while (cur && (cur.opName === "rms_norm" || cur.opName === "rope") && isFree(g, cur)) {
      ops.push(cur);
      last = cur.results[0]!;
      cur = uses.only(last);
    }
    // The KV cache append of the chain's rows (its only reader): the kernel writes them into the
    // cache's buffer, in place, instead of into a tensor of their own for a kernel of its own.
    if (cur?.opName === "cache_append" && cur.operands[1] === last && isFree(g, cur) && cur.results[0]!.type.rank === 4 && normAxis(attrsOf(OPS.cache_append, cur).axis, 4) === 2) ops.push(cur);
  }
  return ops;
}

/**
 * An elementwise op e joins the group of an operand's producer p when e is p's only reader and has
 * p's shape: p's elementwise or epilogue group is extended; a free elementwise p starts an
 * elementwise chain with e; a contraction p (unless it runs in a GEMM library) gets e as epilogue,
 * also through a reshape between them (the MoE combine before the residual adds: [B*S, H] read as
 * [B, S, H]), which keeps every element's flat index.
 */
function elementwiseJoin(e: Op, uses: Uses, g: Grouping, libraryMatmuls: boolean): Claim | undefined {
  const shape = e.results[0]!.type.toString();
  // A float cast of an RMSNorm's result (the MoE router's fp32 input) joins the norm's group, which
  // then writes both, however many other ops read the normalized row.
  const n = e.opName === "cast" ? uses.def(e.operands[0]!) : undefined;
  if (n?.opName === "rms_norm" && isFloat(e.results[0]!.type.dtype) && g.owner.get(n) === "residual_norm") {
    const group = g.groups.find((x) => x.ops.has(n))!;
    const plain = [...group.ops].every((o) => o.opName === "rms_norm" || o.opName === "add");
    if (plain && outlinable(new Set([...group.ops, e]), uses)) return { ops: [e], extend: group };
  }
  const epilogueOf = (p: Op) => hasTrait(p.opName, "contraction") && !(libraryMatmuls && hasTrait(p.opName, "gemm"));
  for (const v of e.operands) {
    const r = uses.def(v);
    if (r?.opName === "reshape" && uses.only(v) === e && !g.owner.has(r) && v.type.withDtype(e.results[0]!.type.dtype).toString() === shape) {
      const q = uses.def(r.operands[0]!);
      if (q && uses.only(r.operands[0]!) === r && !g.owner.has(q) && q.results.length === 1 && epilogueOf(q) && outlinable(new Set([q, r, e]), uses)) return { ops: [q, r, e], kind: "epilogue" };
    }
  }
  for (const v of e.operands) {
    const p = uses.def(v);
    if (!p || uses.only(v) !== e || hasTrait(p.opName, "free") || v.type.withDtype(e.results[0]!.type.dtype).toString() !== shape) continue;
    const kind = g.owner.get(p);
    if (kind !== undefined) {
      const group = g.groups.find((x) => x.ops.has(p))!;
      if ((kind === "elementwise" || kind === "epilogue") && outlinable(new Set([...group.ops, e]), uses)) return { ops: [e], extend: group };
      continue;
    }
    const pair = new Set([p, e]);
    if (!outlinable(pair, uses)) continue;
    if (hasTrait(p.opName, "elementwise")) return { ops: [p, e], kind: "elementwise" };
    if (epilogueOf(p)) return { ops: [p, e], kind: "epilogue" };
  }
  return undefined;
}
