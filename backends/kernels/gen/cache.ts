/**
 * An in-place cache append (cache_append): one thread per element of the new rows, each stored at
 * its place in the cache's buffer, past the cache's length, with the buffer's capacity as the row
 * count of the growth axis. The rows already in the cache are not touched: that is the copy a
 * concat would make every decode step.
 */
import { product } from "../../../ir/dim";
import type { Op } from "../../../ir/module";
import { attrsOf, OPS } from "../../../ir/ops";
import * as K from "../kir";
import type { Gen, GeneratedKernel } from "./context";
import { flatten, unflatten } from "./pointwise";

export function cacheAppendKernel(g: Gen, op: Op): GeneratedKernel {
  const [cache, x] = op.operands as [Op["operands"][number], Op["operands"][number]];
  const out = op.results[0]!;
  const rank = out.type.rank;
  const axis = (attrsOf(OPS.cache_append, op).axis + rank) % rank;
  const kb = g.kb;
  const count = product([...x.type.shape]);
  const flat = kb.let("flat", kb.gid);
  kb.if(K.lt(flat, g.size(count)), () => {
    const coords = unflatten(g, flat, g.dims(x));
    coords[axis] = K.addI(coords[axis]!, g.size(cache.type.shape[axis]!));
    const rows = g.dims(out);
    rows[axis] = g.storageRows(out, axis);
    kb.store(g.buf(out), flatten(coords, rows), kb.load(g.buf(x), flat));
  });
  return g.finish({ dim: g.entryDim(count), per: kb.kernel.wg });
}
