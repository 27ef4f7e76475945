/**
 * The README's model: a two-layer SwiGLU MLP written in the DSL. `lingc compile|run|init` take this
 * file as a model (its default export is the traced module).
 */
import { ModuleTracer, op, scope, tensor, weight } from "../compiler/dsl";

const H = 64, I = 160;
const m = new ModuleTracer("forward", { model: "toy" });
const block = m.fn("block", ["h"], { role: "dense" }, (h) => {
  const x = scope("norm", () => op.rmsNorm(h, weight("weight", [H], "f32"), 1e-6));
  const y = scope("mlp", () =>
    op.linear(op.mul(op.silu(op.linear(x, weight("gate_proj.weight", [I, H], "f32"))), op.linear(x, weight("up_proj.weight", [I, H], "f32"))),
              weight("down_proj.weight", [H, I], "f32")));
  return { hidden: op.add(h, y) };
});
m.entry("forward", { x: tensor("f32", ["B", "S", H]) }, ({ x }) => {
  let h = x;
  for (let i = 0; i < 2; i++) h = block(`layers.${i}`, h).hidden!;
  return { y: h };
});
const module = m.finish(); // verified IR; printModule(module) gives the text form

export default module;
