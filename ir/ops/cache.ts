/**
 * The KV cache's growth: `cache_append(cache, new)` is the cache with `new` joined after it along
 * one axis. Its value is exactly concat's (and it decomposes to concat for backends that do not
 * lower it), but it says more about storage: the result is the first operand's storage grown in
 * place (trait in_place), so a backend that gives the cache a buffer with room along the axis
 * writes only the rows `new` adds, never copying the cache. The rules that make this sound (the
 * cache is a graph input, read only by attention and by its one append) are ir/cache-storage.ts.
 */
import { OpError } from "../errors";
import { TensorType } from "../types";
import { interpretOp } from "./interpret-rules";
import { attr, bytesOf, defineOp, normAxis } from "./registry";
import { CONCAT } from "./shape";

export const CACHE_APPEND = defineOp({
  name: "cache_append",
  summary: "the cache with `new` appended along `axis` (concat's value), written in place into the cache's storage",
  operands: ["cache", "new"],
  attrs: { axis: { kind: "int", doc: "the axis the cache grows along" } },
  traits: ["in_place"],
  infer(ins, attrs) {
    if (ins.length !== 2) throw new OpError(`cache_append takes the cache and the new rows (got ${ins.length} operands)`);
    normAxis(attr.int(attrs, "axis"), ins[0]!.rank);
    return CONCAT.infer(ins, attrs) as TensorType[];
  },
  interpret: (ins, attrs, ctx) => interpretOp(CONCAT, ins, attrs, ctx),
  decompose: (b, ins, attrs) => [b.op1("concat", ins, attrs)],
  // Its value is concat's, so is its derivative.
  vjp: (b, ins, outs, cts, attrs) => CONCAT.vjp!(b, ins, outs, cts, attrs),
  // In place: only the new rows are read and written.
  cost: (ins) => ({ flops: 0, bytesRead: bytesOf(ins[1]!), bytesWritten: bytesOf(ins[1]!) }),
});
