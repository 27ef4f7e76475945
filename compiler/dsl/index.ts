/** The model-definition DSL: tracing (functions, scopes, weights) and the op functions. */
import "../../ir/ops";

export { ModuleTracer, Tensor, scope, weight, emit, type LayerFn, type Results } from "./trace";
export * as op from "./ops";
export { tensor } from "../../ir/types";
