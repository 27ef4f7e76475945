/** A traced module prepared as the onnx target's pipeline prepares it (rope decomposed), for tests that call emitOnnx directly. */
import type { Module } from "../../ir/module";
import { parsePipeline, runPasses } from "../../compiler/passes/manager";

export function forOnnx(m: Module): Module {
  runPasses(m, parsePipeline("decompose{ops=rope}"));
  return m;
}
