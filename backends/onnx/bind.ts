/**
 * Binding an unbound ONNX model (emitted without a checkpoint) to a checkpoint once the weights
 * exist: every `lingc-unbound/<tensor>` external-data entry is pointed at that tensor's bytes inside
 * the checkpoint's safetensors files, after checking dtype and size. The graph is not touched.
 */
import { basename } from "node:path";
import { LingcError } from "../../ir/errors";
import type { Checkpoint } from "../weights/checkpoint";
import { decodeModel, dtypeOfElem, onnx } from "./proto";
import { UNBOUND_PREFIX } from "./weights";

function decodeChecked(bytes: Uint8Array, what: string): ReturnType<typeof decodeModel> {
  let model: ReturnType<typeof decodeModel>;
  try {
    model = decodeModel(bytes);
  } catch (e) {
    throw new LingcError(`${what} is not an ONNX model (${e instanceof Error ? e.message : String(e)})`);
  }
  if (!model.graph) throw new LingcError(`${what} is not an ONNX model (it has no graph)`);
  return model;
}

/** An ONNX model's metadata properties (lingc writes lingc.graph, lingc.model, lingc.weights and lingc.config). */
export function onnxMetadata(bytes: Uint8Array, what = "the model"): Record<string, string> {
  return Object.fromEntries(decodeChecked(bytes, what).metadataProps.map((p) => [p.key ?? "", p.value ?? ""]));
}

export function bindOnnx(bytes: Uint8Array, ck: Checkpoint, what = "the model"): Uint8Array {
  const model = decodeChecked(bytes, what);
  let bound = 0;
  for (const init of model.graph?.initializer ?? []) {
    const loc = init.externalData?.find((e) => e.key === "location");
    if (!loc?.value?.startsWith(UNBOUND_PREFIX)) continue;
    const name = loc.value.slice(UNBOUND_PREFIX.length);
    const e = ck.entry(name);
    if (!e) throw new LingcError(`${ck.dir}: tensor "${name}" is missing (${what} needs it)`);
    const dtype = dtypeOfElem(init.dataType ?? 0);
    const length = Number(init.externalData!.find((x) => x.key === "length")?.value);
    // Dtype, shape and size: a tensor of the right size but another shape (a transposed one) would
    // bind and give wrong numbers.
    // (A stacked expert weight's part is one expert: [1, O, I] against the checkpoint's [O, I].)
    let dims = (init.dims ?? []).map(Number);
    while (dims.length > e.entry.shape.length && dims[0] === 1) dims = dims.slice(1);
    const sameShape = dims.length === e.entry.shape.length && dims.every((d, i) => d === e.entry.shape[i]);
    if (e.entry.dtype !== dtype || !sameShape || e.entry.end - e.entry.begin !== length) {
      throw new LingcError(`${e.file.path}: tensor "${name}" (${e.entry.stDtype} [${e.entry.shape.join(", ")}]) does not match ${what}'s ${dtype} [${dims.join(", ")}] initializer of ${length} bytes`);
    }
    init.externalData = [
      { key: "location", value: basename(e.file.path) },
      { key: "offset", value: String(e.entry.begin) },
      { key: "length", value: String(length) },
    ];
    bound++;
  }
  const meta = model.metadataProps.find((p) => p.key === "lingc.weights");
  if (meta) meta.value = "checkpoint";
  if (bound === 0) throw new LingcError(`${what} has no unbound weights (it is already bound to a checkpoint)`);
  return onnx.ModelProto.encode(model).finish();
}
