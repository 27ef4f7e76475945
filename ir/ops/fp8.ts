/**
 * FP8 conversion ops: `quantize` turns a float tensor into fp8 with scales per block of its last two
 * axes by one of the recipes in ir/quant.ts (activations per token in 1x128 groups: `dynamic`;
 * weights in 128x128 blocks: `transformers` or `ling`), and `dequantize` turns it back. The result
 * type of quantize carries the layout (`f8e4m3fn[T, 256] scale(f32, block(1, 128))`), which the
 * matmul-like ops read (ops/scaled.ts).
 */
import { isFloat, isFp8 } from "../dtype";
import { OpError } from "../errors";
import { QUANT_RECIPES, quantizeValues, type QuantRecipe } from "../quant";
import { Tensor } from "../tensor";
import { TensorType, type QuantLayout } from "../types";
import { attr, bytesOf, defineOp, expectMinRank } from "./registry";
import { realValues } from "./scaled";

function blockLayout(block: readonly number[]): QuantLayout {
  return { scaleDtype: "f32", granularity: { kind: "block", rows: block[0]!, cols: block[1]! } };
}

export const QUANTIZE = defineOp({
  name: "quantize",
  summary: "x in fp8 with f32 scales per block of its last two axes (`block = [rows, cols]`), by a recipe: dynamic (activations), transformers or ling (weights)",
  operands: ["x"],
  attrs: {
    to: { kind: "dtype", doc: "the fp8 format (f8e4m3fn or f8e5m2)" },
    block: { kind: "ints", doc: "the block of one scale, [rows, cols] of the last two axes: [1, 128] per token group, [128, 128] for weights" },
    recipe: { kind: "string", doc: `how scales are chosen: ${QUANT_RECIPES.join(", ")} (ir/quant.ts)` },
  },
  infer([x], attrs) {
    expectMinRank(x!, 2, "quantize input");
    if (!isFloat(x!.dtype) || isFp8(x!.dtype)) throw new OpError(`quantize takes a float tensor wider than fp8, got ${x}`);
    const to = attr.dtype(attrs, "to");
    if (!isFp8(to)) throw new OpError(`quantize: 'to' must be f8e4m3fn or f8e5m2, got ${to}`);
    const block = attr.ints(attrs, "block");
    if (block.length !== 2 || !block.every((b) => Number.isSafeInteger(b) && b > 0)) throw new OpError(`quantize: block must be two positive sizes [rows, cols], got [${block.join(", ")}]`);
    const recipe = attr.str(attrs, "recipe");
    if (!(QUANT_RECIPES as readonly string[]).includes(recipe)) throw new OpError(`quantize: recipe must be one of ${QUANT_RECIPES.join(", ")}, got "${recipe}"`);
    return [new TensorType(to, x!.shape, blockLayout(block))];
  },
  interpret([x], attrs) {
    const to = attr.dtype(attrs, "to");
    const layout = blockLayout(attr.ints(attrs, "block"));
    const { q, scales } = quantizeValues(x!.data, x!.shape, to, layout.granularity, attr.str(attrs, "recipe") as QuantRecipe);
    return [new Tensor(to, x!.shape, q, { layout, scales })];
  },
  cost(ins, outs) {
    return { flops: 3 * outs[0]!.shape.reduce((a, b) => a * b, 1), bytesRead: bytesOf(ins[0]!), bytesWritten: bytesOf(outs[0]!) };
  },
});

export const DEQUANTIZE = defineOp({
  name: "dequantize",
  summary: "the real values (elements x scales) of an fp8 tensor with a scale layout, as `to`",
  operands: ["x"],
  attrs: { to: { kind: "dtype", doc: "the float dtype of the result" } },
  traits: ["scaled"],
  infer([x], attrs) {
    if (!isFp8(x!.dtype) || !x!.quant) throw new OpError(`dequantize takes an fp8 tensor with a scale layout, got ${x}`);
    const to = attr.dtype(attrs, "to");
    if (!isFloat(to) || isFp8(to)) throw new OpError(`dequantize: 'to' must be a float dtype wider than fp8, got ${to}`);
    return [new TensorType(to, x!.shape)];
  },
  interpret([x], attrs) {
    return [Tensor.from(attr.dtype(attrs, "to"), x!.shape, realValues(x!))];
  },
});
