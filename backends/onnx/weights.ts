/**
 * Where an ONNX initializer's bytes live. Bound to a checkpoint, every weight's external-data
 * entry is the byte range of that tensor inside the checkpoint's own safetensors file (zero copy;
 * locations are file names relative to the checkpoint folder, which is given to ONNX Runtime as
 * the external-data folder). Unbound (compiling a built-in config with no weights), each entry
 * names the tensor under `lingc-unbound/` so that loading fails loudly until it is bound with
 * `bindOnnx` / `lingc compile <checkpoint> --target onnx`.
 */
import { basename } from "node:path";
import { LingcError } from "../../ir/errors";
import { byteSize } from "../../ir/dtype";
import type { TensorType } from "../../ir/types";
import type { Checkpoint } from "../weights/checkpoint";

export interface ExternalRef {
  location: string;
  offset: number;
  length: number;
}

export interface WeightLayout {
  /** Stored in the model's metadata: "checkpoint" or "unbound". */
  describe: string;
  ref(name: string, type: TensorType): ExternalRef;
}

export const UNBOUND_PREFIX = "lingc-unbound/";

export function unboundLayout(): WeightLayout {
  return {
    describe: "unbound",
    ref: (name, type) => ({ location: `${UNBOUND_PREFIX}${name}`, offset: 0, length: (type.numel().value ?? 0) * byteSize(type.dtype) }),
  };
}

export function checkpointLayout(ck: Checkpoint): WeightLayout {
  return {
    describe: "checkpoint",
    ref(name, type) {
      const e = ck.entry(name);
      if (!e) throw new LingcError(`${ck.dir}: tensor "${name}" is missing`);
      const want = (type.numel().value ?? 0) * byteSize(type.dtype);
      if (e.entry.dtype !== type.dtype || e.entry.end - e.entry.begin !== want) {
        throw new LingcError(`${e.file.path}: tensor "${name}" (${e.entry.stDtype} [${e.entry.shape}]) does not match the model's ${type}`);
      }
      return { location: basename(e.file.path), offset: e.entry.begin, length: e.entry.end - e.entry.begin };
    },
  };
}
