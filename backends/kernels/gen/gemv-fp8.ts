/**
 * A linear of few rows against an e4m3 weight in 128x128 blocks (decode's projections, W8A8 or
 * weight-only): a warp per output column, its lanes reading the weight row's codes side by side
 * (each lane four consecutive codes of each 128-wide K slice, so a warp reads a slice's 128 bytes
 * together), the slice's products summed in fp32 and then scaled once by the weight block's scale
 * (and, W8A8, the row's activation scale), the lanes' totals added by warp shuffles. Rows loop inside
 * the warp (up to 16 per workgroup; more rows take more workgroups), so a weight row is read from
 * memory once and from cache for the other rows. The sums are
 * exact fp32 sums of the dequantized products (no tensor-core rounding): this kernel is also the
 * exact path of a W8A8 projection (select{prefer=fp8_linear:generated}).
 */
import type { Op, Value } from "../../../ir/module";
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen, GeneratedKernel, GenLimits } from "./context";
import { product } from "../../../ir/dim";

const SLICE = 128;
const WARPS = 8;
/** Rows one workgroup runs through its warps. */
const ROWS = 16;
export const GEMV_FP8_THREADS = WARPS * 32;

const blockScaled = (v: Value, rows: number, cols: number) => {
  const q = v.type.quant;
  return v.type.dtype === "f8e4m3fn" && q?.scaleDtype === "f32" && q.granularity.kind === "block" && q.granularity.rows === rows && q.granularity.cols === cols;
};

/** A lone linear of an e4m3 weight in 128x128 blocks, its input either 1x128-scaled e4m3 or a plain float, on a warp-synchronous target. */
export function coversFp8Gemv(ops: readonly Op[], limits: GenLimits): boolean {
  if (limits.warpSize !== 32 || ops.length !== 1 || ops[0]!.opName !== "linear") return false;
  const [x, w] = ops[0]!.operands as [Value, Value];
  if (!blockScaled(w, 128, 128) || w.type.rank !== 2 || w.type.shape.some((d) => d.value === undefined)) return false;
  return x.type.quant ? blockScaled(x, 1, 128) : ["f32", "bf16", "f16"].includes(x.type.dtype);
}

export function fp8GemvKernel(g: Gen, op: Op): GeneratedKernel {
  const kb = g.kb;
  const [x, w] = op.operands as [Value, Value];
  const y = op.results[0]!;
  const [N, Kd] = w.type.shape.map((d) => d.value!) as [number, number];
  const slices = Math.ceil(Kd / SLICE);
  const rowsDim = product(x.type.shape.slice(0, -1));
  const rows = g.size(rowsDim);
  const scaled = x.type.quant !== undefined;
  const xb = g.buf(x, scaled);
  const xs = scaled ? g.scalesBuf(x) : undefined;
  const wb = g.buf(w, true);
  const ws = g.scalesBuf(w);
  const yb = g.buf(y);
  const { i, add, mul, div, mod, lt } = K;
  const warp = kb.let("warp", div(kb.lid, i(32)));
  const lane = kb.let("lane", mod(kb.lid, i(32)));
  // Workgroup = row chunk x column block.
  const blocks = Math.ceil(N / WARPS);
  const n = kb.let("n", add(mul(mod(kb.wg, i(blocks)), i(WARPS)), warp));
  const r0 = kb.let("r0", mul(div(kb.wg, i(blocks)), i(ROWS)));
  kb.if(lt(n, i(N)), () => {
    kb.loop("r", r0, K.min(rows, add(r0, i(ROWS))), (r) => {
      const acc = kb.var("acc", K.f(0));
      // Unrolled (a constant trip count): every slice's loads are in flight together.
      kb.for("s", i(0), i(slices), (s) => {
        const part = kb.var("part", K.f(0));
        for (let b = 0; b < 4; b++) {
          const k = kb.let("k", add(mul(s, i(SLICE)), add(mul(lane, i(4)), i(b))));
          const term = () => part.set(add(part.ref, mul(kb.load(wb, add(mul(n, i(Kd)), k)), kb.load(xb, add(mul(r, i(Kd)), k)))));
          if (Kd % SLICE === 0) term();
          else kb.if(lt(k, i(Kd)), term);
        }
        let scale: Expr = kb.load(ws, add(mul(div(n, i(128)), i(slices)), s));
        if (xs) scale = mul(scale, kb.load(xs, add(mul(r, i(slices)), s)));
        acc.set(add(acc.ref, mul(part.ref, scale)));
      });
      const total = kb.warpSum(acc.ref);
      kb.if(K.eq(lane, i(0)), () => kb.store(yb, add(mul(r, i(N)), n), g.fit(total, y.type.dtype)));
    });
  });
  // ceil((rows + 15) x blocks / 16) >= blocks x ceil(rows / 16); workgroups past the rows run no row.
  return g.finish({ dim: g.entryDim(rowsDim.add(ROWS - 1).mul(blocks)), per: ROWS });
}
