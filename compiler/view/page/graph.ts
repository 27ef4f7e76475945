/**
 * One function as a laid-out dataflow graph: params, ops and calls as nodes, kernel calls opened as
 * boxes holding the kernel's ops (the plan's kernel groups), laid out by dagre. Values used by many
 * ops (RoPE tables, the cache length) are drawn as labels on their users instead of edges, and the
 * return of a function with many results is left out (the details list them), so an 80-layer entry
 * stays a readable column.
 */
import dagre from "@dagrejs/dagre";
import type { ViewFunction, ViewOp } from "../data";

export interface LaidNode {
  key: string;
  x: number;
  y: number;
  w: number;
  h: number;
  kind: "param" | "op" | "call" | "return";
  title: string;
  sub: string;
  /** The op (in `func`) this node shows; kernels' inner ops name the kernel function. */
  op?: ViewOp;
  func: string;
  /** The kernel box (its call op's id in the shown function) the node sits in. */
  kernel?: number;
}

export interface LaidKernel {
  op: ViewOp;
  callee: ViewFunction;
  x: number;
  y: number;
  w: number;
  h: number;
}

export interface LaidEdge {
  points: { x: number; y: number }[];
}

export interface Layout {
  nodes: LaidNode[];
  kernels: LaidKernel[];
  edges: LaidEdge[];
  width: number;
  height: number;
}

const MANY_USES = 4;
const MANY_RESULTS = 8;
const CHAR = 6.6;

function shortType(t: string): string {
  return t.length > 44 ? `${t.slice(0, 41)}...` : t;
}

export function layoutFunction(f: ViewFunction, lookup: (name: string) => ViewFunction | undefined): Layout {
  const g = new dagre.graphlib.Graph({ compound: true, multigraph: true });
  g.setGraph({ rankdir: "TB", nodesep: 18, ranksep: 26, marginx: 16, marginy: 16 });
  g.setDefaultEdgeLabel(() => ({}));
  const info = new Map<string, Omit<LaidNode, "x" | "y">>();
  const kernels = new Map<string, { op: ViewOp; callee: ViewFunction }>();
  const add = (n: Omit<LaidNode, "x" | "y">, parent?: string) => {
    info.set(n.key, n);
    g.setNode(n.key, { width: n.w, height: n.h });
    if (parent) g.setParent(n.key, parent);
  };
  const size = (title: string, sub: string) => ({ w: Math.max(70, Math.min(340, Math.max(title.length, sub.length) * CHAR + 18)), h: sub ? 38 : 24 });

  // How often each value is used, to draw busy ones (RoPE tables fed to every layer) as labels.
  const uses = new Map<string, number>();
  for (const op of f.ops) for (const o of op.operands) uses.set(o, (uses.get(o) ?? 0) + 1);
  const stub = new Set([...uses].filter(([name, n]) => n > MANY_USES && !name.startsWith("@")).map(([name]) => name));
  const env = new Map<string, string>();
  for (const p of f.params) {
    if (stub.has(p.name)) continue;
    const s = { title: p.name, sub: shortType(p.type) };
    add({ key: `p:${p.name}`, kind: "param", func: f.name, ...s, ...size(s.title, s.sub) });
    env.set(p.name, `p:${p.name}`);
  }
  const edges: [string, string][] = [];
  const wire = (from: string | undefined, to: string) => {
    if (from) edges.push([from, to]);
  };
  const stubs = (operands: string[]) => operands.filter((o) => stub.has(o));
  for (const op of f.ops) {
    const callee = op.callee !== undefined ? lookup(op.callee) : undefined;
    if (callee && callee.attrs["role"] === "kernel") {
      // A kernel group: a box with the kernel's ops; the call's operands feed its params.
      const box = `k:${op.id}`;
      kernels.set(box, { op, callee });
      g.setNode(box, { label: box });
      const inner = new Map<string, string>(callee.params.map((p, i) => [p.name, stub.has(op.operands[i]!) ? "" : (env.get(op.operands[i]!) ?? "")]));
      for (const iop of callee.ops) {
        const key = `${box}/${iop.id}`;
        const s = { title: iop.op, sub: shortType(iop.results.map((r) => r.type).join(", ")) };
        add({ key, kind: "op", func: callee.name, op: iop, kernel: op.id, ...s, ...size(s.title, s.sub) }, box);
        for (const o of iop.operands) wire(inner.get(o) || undefined, key);
        iop.results.forEach((r) => inner.set(r.name, key));
      }
      op.results.forEach((r, i) => env.set(r.name, inner.get(callee.returns[i]!) ?? ""));
      continue;
    }
    const key = `o:${op.id}`;
    const extra = stubs(op.operands);
    const title = op.callee !== undefined ? `call @${op.callee}` : op.op;
    const sub = op.callee !== undefined ? op.scope || shortType(op.results.map((r) => r.type).join(", ")) : shortType(op.results.map((r) => r.type).join(", "));
    const s = { title, sub: extra.length ? `${sub}  (${extra.join(", ")})` : sub };
    add({ key, kind: op.callee !== undefined ? "call" : "op", func: f.name, op, ...s, ...size(s.title, s.sub) });
    for (const o of op.operands) if (!stub.has(o)) wire(env.get(o), key);
    op.results.forEach((r) => env.set(r.name, key));
  }
  if (f.returns.length <= MANY_RESULTS) {
    const s = { title: "return", sub: f.results.map((r) => r.name).join(", ") };
    add({ key: "ret", kind: "return", func: f.name, ...s, ...size(s.title, s.sub.slice(0, 50)) });
    for (const r of f.returns) if (!stub.has(r)) wire(env.get(r), "ret");
  }
  edges.forEach(([a, b], i) => {
    if (a && a !== b) g.setEdge(a, b, {}, `e${i}`);
  });
  dagre.layout(g);

  const nodes: LaidNode[] = [];
  for (const [key, n] of info) {
    const p = g.node(key);
    nodes.push({ ...n, x: p.x, y: p.y });
  }
  const laidKernels: LaidKernel[] = [];
  for (const [key, k] of kernels) {
    const p = g.node(key);
    laidKernels.push({ ...k, x: p.x, y: p.y, w: p.width, h: p.height });
  }
  const laidEdges: LaidEdge[] = g.edges().map((e) => ({ points: (g.edge(e) as { points?: { x: number; y: number }[] }).points ?? [] }));
  const gr = g.graph() as { width?: number; height?: number };
  return { nodes, kernels: laidKernels, edges: laidEdges, width: gr.width ?? 100, height: gr.height ?? 100 };
}
