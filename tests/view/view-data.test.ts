/**
 * `lingc view`'s data and its Model Explorer export: what each pass changed, costs from the op
 * table, model source lines, and the graph JSON's structure (unique ids, edges from existing nodes,
 * namespaces that nest as the layers do), for ling-tiny and Ling-1T.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import "../../ir/ops";
import { compileProgram } from "../../compiler/driver/compile";
import { openSource } from "../../compiler/driver/source";
import { TimelineRecorder, sourceLines } from "../../compiler/view/snapshot";
import { modelExplorerGraphs, scopeNamespace, type MeGraph } from "../../compiler/view/model-explorer";
import type { ViewData, ViewFunction } from "../../compiler/view/data";
import { ROOT } from "../support/paths";

const DIMS = new Map([
  ["B", 1],
  ["S", 2048],
  ["P", 2048],
]);

async function viewOf(model: string, graph = "forward"): Promise<ViewData> {
  const source = await openSource(model);
  const rec = new TimelineRecorder(DIMS);
  const { program, pipeline } = await compileProgram({ source, graphs: [graph], target: "cuda", passRun: { observe: (m, stage, ms) => rec.record(m, stage, ms) } });
  const read = (f: string) => {
    try {
      return readFileSync(join(ROOT, f), "utf8");
    } catch {
      return undefined;
    }
  };
  return { model, graph, target: "cuda", pipeline, dims: Object.fromEntries(DIMS), entry: program.graphs[0]!.name, functions: rec.functions, snapshots: rec.snapshots, sources: sourceLines(rec.functions, read) };
}

const fn = (d: ViewData, snap: number, name: string): ViewFunction => d.functions[d.snapshots[snap]!.functions.find((k) => d.functions[k]!.name === name)!]!;

describe("view data", () => {
  it("records the module before the passes and after each, with what each pass changed", async () => {
    const d = await viewOf("ling-tiny");
    expect(d.snapshots.map((s) => s.pass)).toEqual(["input", "castlinear", "cse", "dce", "fusion{profile=cuda-sm90a}", "select{profile=cuda-sm90a}"]);
    const input = d.snapshots[0]!;
    expect(input.functions.map((k) => d.functions[k]!.name)).toEqual(["dense_layer", "moe_layer", "mtp_layer", "forward"]);
    const fusion = d.snapshots[4]!;
    // Fusion outlines kernels: the router and SwiGLU kernels are new functions, moe_layer changed.
    expect(fusion.changes["moe_layer.router"]?.status).toBe("added");
    expect(fusion.changes["moe_layer.swiglu"]?.status).toBe("added");
    const moe = Object.entries(fusion.changes).find(([k]) => d.functions[k]!.name === "moe_layer")![1];
    expect(moe.status).toBe("changed");
    const after = fn(d, 4, "moe_layer");
    const newCalls = moe.ops.map((i) => after.ops[i]!).filter((o) => o.op === "call").map((o) => o.callee);
    expect(newCalls).toEqual(expect.arrayContaining(["moe_layer.router", "moe_layer.swiglu", "moe_layer.attention"]));
    expect(moe.removed).toBeGreaterThan(10);
    // dce after cse on a traced model: the function texts are stored once, not per pass.
    const names = Object.values(d.functions).map((f) => f.name);
    expect(names.filter((n) => n === "mtp_layer").length).toBeLessThanOrEqual(3);
    // select adds kernel choices (dispatch) and nothing else.
    const sel = d.snapshots[5]!;
    for (const [k, c] of Object.entries(sel.changes)) {
      expect(c.status).toBe("changed");
      for (const i of c.ops) expect(d.functions[k]!.ops[i]!.dispatch).toBeDefined();
    }
  });

  it("gives each op its FLOPs and bytes at the view's sizes, and each function its cost per call", async () => {
    const d = await viewOf("ling-tiny");
    const moe = fn(d, 0, "moe_layer");
    // attention.dense: [1, 2048, 64] x [64, 64]^T.
    const dense = moe.ops.find((o) => o.op === "linear" && o.operands.includes("@attention.dense.weight"))!;
    expect(dense.flops).toBe(2 * 2048 * 64 * 64);
    expect(dense.bytes).toBe(4 * (2048 * 64 + 64 * 64 + 2048 * 64));
    const total = moe.ops.reduce((a, o) => a + (o.flops ?? 0), 0);
    expect(moe.cost!.flops).toBe(total);
    // A call op's cost is its callee's, in the fused module too.
    const fused = fn(d, 5, "moe_layer");
    const call = fused.ops.find((o) => o.callee === "moe_layer.router")!;
    expect(call.flops).toBe(fn(d, 5, "moe_layer.router").cost!.flops);
    expect(fused.cost!.flops).toBe(moe.cost!.flops);
    // Weights with shapes and bytes (f32 ling-tiny).
    expect(moe.weights.find((w) => w.name === "mlp.experts.*.gate_proj.weight")).toEqual({ name: "mlp.experts.*.gate_proj.weight", ref: "@mlp.experts.*.gate_proj.weight", type: "f32[16, 32, 64]", bytes: 16 * 32 * 64 * 4 });
  });

  it("points each op at its model source line", async () => {
    const d = await viewOf("ling-tiny");
    const moe = fn(d, 5, "moe_layer");
    const qkv = moe.ops.find((o) => o.operands.includes("@attention.query_key_value.weight"))!;
    const [file, line] = qkv.loc!.split(":");
    expect(file).toBe("models/ling2.ts");
    const text = readFileSync(join(ROOT, file!), "utf8").split("\n")[Number(line) - 1]!;
    expect(d.sources[file!]![Number(line)]).toBe(text);
    expect(text).toMatch(/query_key_value|qkv/i);
  });
});

function checkGraph(g: MeGraph, graphIds: Set<string>): void {
  const ids = new Set<string>();
  for (const n of g.nodes) {
    expect(ids.has(n.id), `${g.id}: node id ${n.id} twice`).toBe(false);
    ids.add(n.id);
  }
  for (const n of g.nodes) {
    for (const e of n.incomingEdges) expect(ids.has(e.sourceNodeId), `${g.id}: ${n.id}'s edge from ${e.sourceNodeId}`).toBe(true);
    for (const s of n.subgraphIds ?? []) expect(graphIds.has(s), `${g.id}: subgraph ${s}`).toBe(true);
    if (n.namespace) expect(n.namespace.split("/").every(Boolean), `${g.id}: namespace ${n.namespace}`).toBe(true);
  }
}

describe("Model Explorer export", () => {
  it("scopes become nested namespaces, an index staying with its list", () => {
    expect(scopeNamespace("model.layers.7.mlp.gate")).toBe("model/layers.7/mlp/gate");
    expect(scopeNamespace("model.layers.80.eh_proj")).toBe("model/layers.80/eh_proj");
    expect(scopeNamespace("")).toBe("");
  });

  it.each([
    ["ling-tiny", 3, 1],
    ["ling-1t", 80, 4],
  ])("%s: unique ids, edges from existing nodes, namespaces nested as the layers", async (model, layers, dense) => {
    const d = await viewOf(model);
    const me = modelExplorerGraphs(d);
    const graphIds = new Set(me.graphs.map((g) => g.id));
    expect(graphIds.size).toBe(me.graphs.length);
    for (const g of me.graphs) checkGraph(g, graphIds);
    const expanded = me.graphs[0]!;
    const attr = (n: (typeof expanded.nodes)[number], k: string) => n.attrs.find((a) => a.key === k)?.value;
    // Every layer's ops sit under model/layers.<i>, with its attention and MLP nested inside it.
    const byLayer = new Map<number, Set<string>>();
    for (const n of expanded.nodes) {
      const scope = attr(n, "scope");
      if (scope === undefined) continue;
      expect(n.namespace).toBe(scopeNamespace(scope));
      const m = /^model\/layers\.(\d+)(\/|$)/.exec(n.namespace);
      if (m) {
        const set = byLayer.get(Number(m[1])) ?? new Set<string>();
        set.add(n.namespace.split("/").slice(2, 3).join("/"));
        byLayer.set(Number(m[1]), set);
      }
    }
    // The layers plus the MTP layer, each with attention; the MoE ones with mlp/gate and mlp/experts.
    expect([...byLayer.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: layers + 1 }, (_, i) => i));
    for (const [i, parts] of byLayer) {
      expect(parts.has("attention"), `layer ${i}`).toBe(true);
      if (i >= dense && i < layers) expect(parts.has("mlp"), `layer ${i}`).toBe(true);
    }
    const gate = expanded.nodes.find((n) => n.namespace === `model/layers.${dense}/mlp/gate` && n.label === "group_topk")!;
    expect(attr(gate, "kernel")).toBe("moe_layer.router");
    // The folded graphs: a layer call's subgraph is its function's graph.
    const entry = me.graphs.find((g) => g.id === "forward/forward")!;
    const call = entry.nodes.find((n) => n.label === "call moe_layer")!;
    expect(call.subgraphIds).toEqual(["forward/moe_layer"]);
    expect(call.namespace).toBe(`model/layers.${dense}`);
  }, 60_000);
});
