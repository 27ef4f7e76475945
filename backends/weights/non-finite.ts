/**
 * A weight holding NaN or an infinity would make every output NaN without a word: the refusal, naming
 * the tensor (an expert's, for a stacked weight: `experts.*.up`) and the position in it. Shared by the
 * checkpoint binder and the WebGPU upload of bf16 bit patterns; it imports nothing but the error class,
 * so the browser bundle takes it without the IR (hence the stacked test spelled here, as ir/module's
 * isStackedWeight spells it).
 */
import { LingcError } from "../../ir/errors";

/** `flat` is the value's index in the whole weight (all experts, for a stacked one); `expertName` names expert e's tensor. */
export function nonFiniteWeight(name: string, shape: readonly number[], flat: number, value: number, expertName: (e: number) => string, where = ""): LingcError {
  const stacked = name.includes(".*.");
  const local = stacked ? shape.slice(1) : shape;
  const per = local.reduce((a, b) => a * b, 1);
  let r = stacked ? flat % per : flat;
  const at: number[] = [];
  for (let d = local.length - 1; d >= 0; d--) {
    at.unshift(r % local[d]!);
    r = Math.floor(r / local[d]!);
  }
  const tensor = stacked ? expertName(Math.floor(flat / per)) : name;
  return new LingcError(`${where}weight "${tensor}" holds ${value} at [${at.join(", ")}]; lingc refuses non-finite weights (every output would be NaN)`);
}
