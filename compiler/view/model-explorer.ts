/**
 * Export to Google's Model Explorer graph JSON (its adapter format: `{graphs: [{id, nodes: [{id,
 * label, namespace, subgraphIds, attrs, incomingEdges, outputsMetadata}]}]}`). Two kinds of graph:
 * the entry with every call expanded, its ops in namespaces that nest as the model's layers do
 * (`model/layers.7/mlp/gate`), and one graph per function as lingc keeps it (folded: a call is one
 * node whose subgraph is its callee's graph).
 */
import type { ViewData, ViewFunction, ViewOp } from "./data";

export interface MeKeyValue {
  key: string;
  value: string;
}
export interface MeEdge {
  sourceNodeId: string;
  sourceNodeOutputId: string;
  targetNodeInputId: string;
}
export interface MeNode {
  id: string;
  label: string;
  namespace: string;
  subgraphIds?: string[];
  attrs: MeKeyValue[];
  incomingEdges: MeEdge[];
  outputsMetadata: { id: string; attrs: MeKeyValue[] }[];
}
export interface MeGraph {
  id: string;
  nodes: MeNode[];
}

/** A checkpoint scope as a namespace path: `model.layers.7.mlp.gate` -> `model/layers.7/mlp/gate` (an index stays with its list). */
export function scopeNamespace(scope: string): string {
  const parts: string[] = [];
  for (const p of scope.split(".").filter(Boolean)) {
    if (/^\d+$/.test(p) && parts.length) parts[parts.length - 1] += `.${p}`;
    else parts.push(p);
  }
  return parts.join("/");
}

const joinScope = (a: string, b: string) => (a && b ? `${a}.${b}` : a || b);

function opAttrs(op: ViewOp, f: ViewFunction, extra: MeKeyValue[]): MeKeyValue[] {
  const out: MeKeyValue[] = [...extra, ...op.attrs.map(([key, value]) => ({ key, value }))];
  const weights = op.operands.filter((o) => o.startsWith("@"));
  if (weights.length) out.push({ key: "weights", value: weights.map((w) => `${w}: ${f.weights.find((x) => x.ref === w)?.type ?? "?"}`).join("; ") });
  if (op.loc) out.push({ key: "source", value: op.loc });
  if (op.dispatch) out.push({ key: "kernels", value: op.dispatch });
  if (op.flops !== undefined) out.push({ key: "flops", value: String(op.flops) }, { key: "bytes", value: String(op.bytes) });
  return out;
}

/** A graph input (a parameter) and a graph output node. */
function inputNode(id: string, name: string, type: string): MeNode {
  return { id, label: "Input", namespace: "", attrs: [{ key: "name", value: name }, { key: "type", value: type }], incomingEdges: [], outputsMetadata: [{ id: "0", attrs: [{ key: "tensor_name", value: name }, { key: "type", value: type }] }] };
}
function outputNode(id: string, name: string, type: string, from: { node: string; out: number } | undefined): MeNode {
  return { id, label: "Output", namespace: "", attrs: [{ key: "name", value: name }, { key: "type", value: type }], incomingEdges: from ? [{ sourceNodeId: from.node, sourceNodeOutputId: String(from.out), targetNodeInputId: "0" }] : [], outputsMetadata: [] };
}

function outputs(op: ViewOp): MeNode["outputsMetadata"] {
  return op.results.map((r, i) => ({ id: String(i), attrs: [{ key: "tensor_name", value: r.name }, { key: "type", value: r.type }] }));
}

/** The graphs of the view's last snapshot (the module after the whole pipeline). */
export function modelExplorerGraphs(data: ViewData): { graphs: MeGraph[] } {
  const last = data.snapshots[data.snapshots.length - 1]!;
  const byName = new Map(last.functions.map((k) => [data.functions[k]!.name, data.functions[k]!]));
  const entry = byName.get(data.entry);
  if (!entry) throw new Error(`the module has no entry function @${data.entry}`);
  const graphId = (name: string) => `${data.graph}/${name}`;

  // The entry with calls expanded.
  const nodes: MeNode[] = [];
  let next = 0;
  type Source = { node: string; out: number };
  const expand = (f: ViewFunction, prefix: string, args: (Source | undefined)[], kernel: string | undefined): (Source | undefined)[] => {
    const env = new Map<string, Source | undefined>(f.params.map((p, i) => [p.name, args[i]]));
    for (const op of f.ops) {
      const callee = op.callee !== undefined ? byName.get(op.callee) : undefined;
      const ins = op.operands.map((o) => env.get(o));
      if (callee) {
        const isKernel = callee.attrs["role"] === "kernel";
        const outs = expand(callee, joinScope(prefix, op.scope), ins, isKernel ? callee.name : kernel);
        op.results.forEach((r, i) => env.set(r.name, outs[i]));
        continue;
      }
      const id = `n${next++}`;
      const scope = joinScope(prefix, op.scope);
      const extra: MeKeyValue[] = [{ key: "scope", value: scope }, { key: "function", value: f.name }];
      if (kernel) extra.push({ key: "kernel", value: kernel });
      nodes.push({
        id,
        label: op.op,
        namespace: scopeNamespace(scope),
        attrs: opAttrs(op, f, extra),
        incomingEdges: ins.flatMap((s, j) => (s ? [{ sourceNodeId: s.node, sourceNodeOutputId: String(s.out), targetNodeInputId: String(j) }] : [])),
        outputsMetadata: outputs(op),
      });
      op.results.forEach((r, i) => env.set(r.name, { node: id, out: i }));
    }
    return f.returns.map((r) => env.get(r));
  };
  const inputs = entry.params.map((p, i): Source => {
    nodes.push(inputNode(`input${i}`, p.name, p.type));
    return { node: `input${i}`, out: 0 };
  });
  const results = expand(entry, "", inputs, undefined);
  entry.results.forEach((r, i) => nodes.push(outputNode(`output${i}`, r.name, r.type, results[i])));
  const graphs: MeGraph[] = [{ id: `${data.graph} (expanded)`, nodes }];

  // One graph per function, folded.
  for (const f of byName.values()) {
    const fn: MeNode[] = [];
    const env = new Map<string, { node: string; out: number }>();
    f.params.forEach((p, i) => {
      fn.push(inputNode(`input${i}`, p.name, p.type));
      env.set(p.name, { node: `input${i}`, out: 0 });
    });
    for (const op of f.ops) {
      const id = `op${op.id}`;
      fn.push({
        id,
        label: op.callee !== undefined ? `call ${op.callee}` : op.op,
        namespace: scopeNamespace(op.scope),
        ...(op.callee !== undefined && byName.has(op.callee) ? { subgraphIds: [graphId(op.callee)] } : {}),
        attrs: opAttrs(op, f, op.scope ? [{ key: "scope", value: op.scope }] : []),
        incomingEdges: op.operands.flatMap((o, j) => {
          const s = env.get(o);
          return s ? [{ sourceNodeId: s.node, sourceNodeOutputId: String(s.out), targetNodeInputId: String(j) }] : [];
        }),
        outputsMetadata: outputs(op),
      });
      op.results.forEach((r, i) => env.set(r.name, { node: id, out: i }));
    }
    f.returns.forEach((r, i) => fn.push(outputNode(`output${i}`, f.results[i]!.name, f.results[i]!.type, env.get(r))));
    graphs.push({ id: graphId(f.name), nodes: fn });
  }
  return { graphs };
}
