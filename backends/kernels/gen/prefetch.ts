/**
 * Weight rows prefetched into L2 before a kernel waits for the one before it (Kernel.preWait): at
 * decode a dense GEMV is short and starts cold, its weight rows a DRAM round trip away; launched
 * early (programmatic dependent launch), its workgroups can bring their rows in while the previous
 * kernel's tail runs, and then read them from L2. Only data no kernel writes (weights): a prefetch
 * changes no value, so it is correct anywhere, but useful only there.
 */
import * as K from "../kir";
import type { Expr } from "../kir";
import type { Gen } from "./context";

/**
 * Rows row0 .. row0 + rows - 1 (those below `total`) of weight buffer `buf`, `rowBytes` each, by one
 * thread of each workgroup for which `first` holds (one workgroup of those that share the rows).
 * row0 and `first` are expressions of the workgroup index and constants only (no lets: see
 * KernelBuilder.beforeWait). Nothing where the target has no prefetch, the rows are not 16-byte
 * units, or byte offsets would pass 32 bits; and only for the kinds of GEMV (`kind`: FP8 or
 * bf16/f32 weights) that GenLimits.prefetchWeights names, or where `always` (a GEMV with a norm
 * prologue: its weights stream in while its warps compute the row's norm).
 */
export function prefetchWeightRows(g: Gen, kind: "fp8" | "bf16", buf: string, row0: Expr, rows: number, total: number, rowBytes: number, first: Expr, always = false): void {
  const on = always || g.limits.prefetchWeights === "all" || (g.limits.prefetchWeights === "fp8" && kind === "fp8");
  if (!on || rowBytes % 16 !== 0 || total * rowBytes > 2 ** 31 - 1) return;
  const kb = g.kb;
  const { i, mul, min, sub } = K;
  kb.beforeWait(() => kb.if(K.and(K.eq(kb.lid, i(0)), first), () => kb.prefetchL2(buf, mul(row0, i(rowBytes)), mul(min(i(rows), sub(i(total), row0)), i(rowBytes)))));
}
