/**
 * fp8: FP8 projections, the layout in the types. For every linear and grouped_linear whose weight
 * matches one of `projections` (names relative to the function, `*` one name part; by default
 * Ling's list: attention QKV and output, the dense MLP, the shared and routed experts, also inside
 * the MTP layer; the router gate, embedding, head, norms and eh_proj stay as they are):
 *   - weights=stored (an FP8 checkpoint): the weight's declared type becomes
 *     `f8e4m3fn[O, I] scale(f32, block(B, B))`, so binding reads its fp8 tensor and block scales;
 *   - weights=quantize: the weight is quantized from what the checkpoint stores, by `recipe`, with
 *     a `quantize` op that reads only the weight (backends run such steps once, at load);
 *   - activations=dynamic: the input is quantized per token in 1 x G groups (`quantize`, recipe
 *     dynamic) and the product keeps the input's dtype (`out`); activations=none leaves the input
 *     as it is (weight-only, W8A16). gather=before: an input that is a token gather (moe_permute,
 *     the routed experts') is quantized before it, the codes and their scale rows gathered instead
 *     (the same codes: a row's groups are its own), so T tokens are quantized where T x k rows were.
 * A cast between the weight and the product (a model computing in another dtype than the checkpoint
 * stores) is looked through: the fp8 weight replaces it. Run cse after it: projections sharing an
 * input (gate and up) then share one activation quantization.
 */
import { LingcError } from "../../ir/errors";
import type { DType } from "../../ir/dtype";
import type { Func, Module, Op, Value } from "../../ir/module";
import { Builder, eraseOp, Uses } from "../../ir/rewrite";
import { TensorType } from "../../ir/types";
import type { Pass } from "./pass";
import { optionReader } from "./pipeline";

/** Ling's FP8 projections (LING2.md 2.8 and 3.1). */
export const LING_FP8_PROJECTIONS = [
  "attention.query_key_value",
  "attention.dense",
  "mlp.gate_proj",
  "mlp.up_proj",
  "mlp.down_proj",
  "mlp.shared_experts.gate_proj",
  "mlp.shared_experts.up_proj",
  "mlp.shared_experts.down_proj",
  "mlp.experts.*.gate_proj",
  "mlp.experts.*.up_proj",
  "mlp.experts.*.down_proj",
] as const;

const FORMATS: Record<string, DType> = { e4m3: "f8e4m3fn", e5m2: "f8e5m2" };

/** Whether a weight name (without `.weight`) is one of the patterns, or ends with one after a dot. */
export function projectionMatcher(patterns: readonly string[]): (name: string) => boolean {
  const res = patterns.map((p) => new RegExp(`(^|\\.)${p.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join("[^.]+")}$`));
  return (name) => res.some((r) => r.test(name));
}

/** The weight a matmul's second operand is, looking through a cast of it. */
function weightOf(v: Value): { weight: Value; cast?: Op } | undefined {
  if (v.kind === "weight") return { weight: v };
  const d = v.def;
  if (d?.opName === "cast" && d.operands[0]!.kind === "weight") return { weight: d.operands[0]!, cast: d };
  return undefined;
}

export const fp8: Pass = {
  name: "fp8",
  summary: "makes the matching projections FP8: weights stored or quantized in blocks, inputs quantized per token (or not)",
  options: {
    format: { kind: "string", doc: "the fp8 format (default e4m3)", choices: ["e4m3", "e5m2"] },
    "weight-block": { kind: "int", doc: "rows and columns of one weight scale block (default 128)" },
    "activation-group": { kind: "int", doc: "elements of one activation scale group along the input features (default 128)" },
    activations: { kind: "string", doc: "dynamic: quantize each projection's input per token; none: weight-only (default dynamic)", choices: ["dynamic", "none"] },
    weights: { kind: "string", doc: "stored: the checkpoint holds them in fp8 with block scales; quantize: quantized from its weights (default quantize)", choices: ["stored", "quantize"] },
    recipe: { kind: "string", doc: "how weights=quantize picks block scales (default transformers)", choices: ["transformers", "ling"] },
    gather: { kind: "string", doc: "before: quantize the tokens a moe_permute gathers, then gather the codes; after: quantize the gathered rows (default after; lingc's CUDA pipeline passes before, compiler/driver/targets.ts fp8Defaults)", choices: ["after", "before"] },
    projections: { kind: "list", doc: `weight names to make FP8 (without .weight; * is one name part; default: ${LING_FP8_PROJECTIONS.join(",")})` },
  },
  run(m: Module, options) {
    const o = optionReader(options);
    const to = FORMATS[o.string("format", "e4m3")!]!;
    const wb = o.int("weight-block", 128);
    const group = o.int("activation-group", 128);
    if (!(wb > 0) || !(group > 0)) throw new LingcError(`fp8: weight-block and activation-group must be positive (got ${wb} and ${group})`);
    const dynamic = o.string("activations", "dynamic") === "dynamic";
    const gatherFirst = o.string("gather", "after") === "before";
    const stored = o.string("weights", "quantize") === "stored";
    const recipe = o.string("recipe", "transformers")!;
    const listed = o.list("projections");
    const matches = projectionMatcher(listed.length ? listed : LING_FP8_PROJECTIONS);
    const layout = { scaleDtype: "f32" as DType, granularity: { kind: "block" as const, rows: wb, cols: wb } };
    for (const f of m.functions) rewriteFunction(m, f, { to, wb, group, dynamic, gatherFirst, stored, recipe, matches, layout });
  },
};

interface Plan {
  to: DType;
  wb: number;
  group: number;
  dynamic: boolean;
  gatherFirst: boolean;
  stored: boolean;
  recipe: string;
  matches: (name: string) => boolean;
  layout: TensorType["quant"];
}

function rewriteFunction(m: Module, f: Func, p: Plan): void {
  const retyped = new Set<Value>();
  const casts = new Set<Op>();
  const quantizedLast = new Map<Value, Op>();
  for (const op of [...f.body]) {
    if (op.opName !== "linear" && op.opName !== "grouped_linear") continue;
    const found = weightOf(op.operands[1]!);
    if (!found || !p.matches(found.weight.name!.replace(/\.weight$/, ""))) continue;
    const { weight, cast } = found;
    const b = new Builder(m, f).setInsertionPointBefore(op);
    const at = { scope: op.scope, loc: op.loc };
    if (p.stored) {
      if (!retyped.has(weight)) {
        weight.type = new TensorType(p.to, weight.type.shape, p.layout);
        retyped.add(weight);
      }
      op.operands[1] = weight;
    } else {
      op.operands[1] = b.op1("quantize", [weight], { to: p.to, block: [p.wb, p.wb], recipe: p.recipe }, at);
    }
    if (cast) casts.add(cast);
    if (p.dynamic) {
      const x = op.operands[0]!;
      // Right after its input is made (first in the function for a parameter), not before this
      // projection: cse then finds one quantize for the projections of one input, and fusion can
      // take it into the kernel that makes the input (an RMSNorm's, residual_norm's) where no other
      // reader of that kernel's results comes between.
      // (After the quantizes already made of it, so that they stay in program order.)
      const quantized = (v: Value): Value => {
        const def = quantizedLast.get(v) ?? v.def;
        const qb = new Builder(m, f);
        if (def && f.body.includes(def)) qb.setInsertionPointAfter(def);
        else qb.setInsertionPointBefore(f.body[0]);
        const q = qb.op1("quantize", [v], { to: p.to, block: [1, p.group], recipe: "dynamic" }, at);
        quantizedLast.set(v, q.def!);
        return q;
      };
      const gather = x.def?.opName === "moe_permute" && p.gatherFirst ? x.def : undefined;
      if (gather) {
        // The tokens' codes, gathered where the rows were (cse merges gate's and up's). Tokens that
        // are a reshape merging leading axes ([B, S, H] -> [B*S, H]) are quantized before it and
        // their codes reshaped: the quantize is then the one the shared expert's projections of
        // the same rows make (cse), and no step of its own.
        const src = gather.operands[0]!;
        const view = src.def?.opName === "reshape" && f.body.includes(src.def) && src.type.shape[src.type.rank - 1]!.equals(src.def.operands[0]!.type.shape[src.def.operands[0]!.type.rank - 1]!) ? src.def : undefined;
        let codes: Value;
        if (view) {
          const q = quantized(view.operands[0]!);
          codes = new Builder(m, f).setInsertionPointAfter(q.def!).op1("reshape", [q], view.attrs, { scope: view.scope, loc: view.loc });
        } else codes = quantized(src);
        const gb = new Builder(m, f).setInsertionPointAfter(gather);
        op.operands[0] = gb.op1("moe_permute", [codes, gather.operands[1]!], gather.attrs, { scope: gather.scope, loc: gather.loc });
      } else op.operands[0] = quantized(x);
      op.attrs = { ...op.attrs, out: x.type.dtype };
    }
  }
  if (!casts.size && !retyped.size) return;
  const uses = new Uses(f);
  // The casts the fp8 weights replaced, where nothing else reads them.
  const erased = new Set<Op>();
  for (const c of casts) {
    if (uses.of(c.results[0]!).length > 0) continue;
    eraseOp(f, c);
    erased.add(c);
  }
  // A weight stored in fp8 can only feed the projections: anything else would read fp8 codes as values.
  for (const w of retyped) {
    for (const u of uses.of(w)) {
      if (!erased.has(u) && u.opName !== "linear" && u.opName !== "grouped_linear") throw new LingcError(`fp8: weight @${w.name} is stored in fp8 but is also read by '${u.opName}' (in @${f.name}); leave it out of projections`, u.loc);
    }
  }
}
