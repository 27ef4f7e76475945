/** `lingc onnx-bind <model.onnx> <checkpoint>`: points an unbound ONNX model's weights into a checkpoint. */
import { readFileSync } from "node:fs";
import { LingcError } from "../../../ir/errors";
import { bindOnnx, onnxMetadata } from "../../../backends/onnx/bind";
import { checkConfigRecord } from "../../../models/config-record";
import { Checkpoint } from "../../../backends/weights/checkpoint";
import { resolveCheckpoint } from "../../../models/resolve";
import { str } from "../args";
const CHECKPOINT_POSITIONAL = { name: "checkpoint", help: "a checkpoint folder (config.json + *.safetensors)" };
import { refuseInputAsOutput, writeFileAtomic } from "../io";
import type { Command } from "./command";

export const onnxBind: Command = {
  spec: {
    name: "onnx-bind",
    summary: "Binds an ONNX model compiled without weights (lingc compile <built-in> --target onnx) to a checkpoint: its external data then points into the checkpoint's safetensors files, with no copy.",
    positionals: [
      { name: "model.onnx", help: "the unbound model" },
      CHECKPOINT_POSITIONAL,
    ],
    options: [{ name: "out", value: "FILE", help: "where to write the bound model", required: true }],
  },
  async run(args, io) {
    const [file, ckArg] = args.positionals as [string, string];
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(file);
    } catch (e) {
      throw new LingcError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const ckDir = resolveCheckpoint(ckArg).checkpointDir;
    refuseInputAsOutput(str(args, "out")!, [file, ckDir]);
    // The checkpoint's config must be the one the model was compiled from (values such as rope_theta
    // change the numbers without changing a shape).
    const recorded = onnxMetadata(bytes, file)["lingc.config"];
    if (recorded) checkConfigRecord(recorded, ckDir, file);
    const ck = Checkpoint.open(ckDir);
    try {
      writeFileAtomic(str(args, "out")!, bindOnnx(bytes, ck, file));
    } finally {
      ck.close();
    }
    io.err(`wrote ${str(args, "out")} (weights in ${ck.dir})\n`);
    return 0;
  },
};
