/**
 * A graph cut into pipeline stages (the pipeline pass: an entry that calls stage functions in turn,
 * `transfer` ops between them) as one module per stage and the chain that connects them: where each
 * stage's inputs come from (a graph input, or a result of an earlier stage) and which stage result
 * each graph output is. Hosts that run a stage per process or per session (ONNX Runtime, a GPU per
 * stage) load the stage modules and follow the chain.
 */
import { LingcError } from "./errors";
import { Func, Module, reachableFunctions, type Op, type Value } from "./module";

export type StageInput = { input: string } | { stage: number; result: string };

export interface StageChain {
  stages: { module: Module; inputs: StageInput[] }[];
  outputs: { name: string; stage: number; result: string }[];
}

const stageCalls = (m: Module): Op[] => (m.entry?.body ?? []).filter((op) => op.opName === "call" && m.getFunc(op.callee!)?.attrs["role"] === "stage");

/** Whether the graph's entry calls stage functions. */
export function isStaged(m: Module): boolean {
  return stageCalls(m).length > 0;
}

/**
 * The stage modules are named `<graph>.stage<k>` and carry only the `model` attribute; with
 * `asGraph` each is named like the graph and keeps all of its attributes (a host that runs one
 * program per stage, whose graphs keep their names and generation roles: the CUDA stage programs).
 */
export function splitStages(m: Module, options: { asGraph?: boolean } = {}): StageChain {
  const f = m.entry;
  if (!f) throw new LingcError(`module @${m.name} has no entry function`);
  const calls = stageCalls(m);
  if (calls.length === 0) throw new LingcError(`@${m.name} is not cut into stages (run the pipeline pass)`);
  const other = f.body.find((op) => op.opName !== "transfer" && !calls.includes(op));
  if (other) throw new LingcError(`@${m.name}: '${other.opName}' runs between the stages; every op must be in a stage`);
  // A value made by stage k (result i of its call), by name of the stage function's result.
  const madeBy = new Map<Value, { stage: number; result: string }>();
  calls.forEach((call, k) => {
    const g = m.getFunc(call.callee!)!;
    call.results.forEach((r, i) => madeBy.set(r, { stage: k, result: g.results[i]!.name! }));
  });
  const source = (v: Value): StageInput => {
    const through = v.def?.opName === "transfer" ? v.def.operands[0]! : v;
    const made = madeBy.get(through);
    if (made) return made;
    if (through.kind === "param") return { input: through.name! };
    throw new LingcError(`@${m.name}: a stage reads a value no stage makes (${through.name ?? "unnamed"})`);
  };
  const stages = calls.map((call, k) => {
    const g = m.getFunc(call.callee!)!;
    const module = new Module(options.asGraph ? m.name : `${m.name}.stage${k}`);
    module.attrs = options.asGraph ? { ...m.attrs } : m.attrs["model"] !== undefined ? { model: m.attrs["model"] } : {};
    // The stage function is the stage module's entry: a copy under the module's name (its ops and
    // values shared, read only), with the functions it calls.
    const entry = new Func(module.name);
    entry.params = g.params;
    entry.weights = g.weights;
    entry.body = g.body;
    entry.results = g.results;
    module.functions = [...reachableFunctions(m, g).filter((h) => h !== g), entry];
    return { module, inputs: call.operands.map(source) };
  });
  const outputs = f.results.map((r) => {
    const made = madeBy.get(r.value);
    if (!made) throw new LingcError(`@${m.name}: output ${r.name} is not a stage's result`);
    return { name: r.name!, ...made };
  });
  return { stages, outputs };
}
