/**
 * The `lingc view` page: reads the view data (`window.LINGC_VIEW`, from data.js) and shows the
 * module's functions as a hierarchy, the selected function as a graph (kernel groups as boxes), the
 * selected op's details with its model source line, a search over scopes and value names, and the
 * pass timeline with what each pass changed. No network: everything it needs is in the folder.
 */
import type { ViewData, ViewFunction, ViewOp, ViewSnapshot } from "../data";
import { layoutFunction, type LaidNode, type Layout } from "./graph";

declare global {
  interface Window {
    LINGC_VIEW: ViewData;
    /** Set once the first graph is drawn (the benchmark and tests wait for it). */
    lingcViewReady?: number;
  }
}

const data = window.LINGC_VIEW;
const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const SVG = "http://www.w3.org/2000/svg";

const state = {
  snap: data.snapshots.length - 1,
  func: data.entry,
  /** Selected: an op of the shown function, an op inside a kernel box, or a kernel box. */
  selected: undefined as { kind: "op"; func: string; op: number; kernel?: number } | { kind: "kernel"; op: number } | undefined,
  history: [] as string[],
};

function snapshot(): ViewSnapshot {
  return data.snapshots[state.snap]!;
}

/** The shown snapshot's functions by name. */
function functions(): Map<string, ViewFunction> {
  return new Map(snapshot().functions.map((k) => [data.functions[k]!.name, data.functions[k]!]));
}

function keyOf(name: string): string | undefined {
  return snapshot().functions.find((k) => data.functions[k]!.name === name);
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, ...kids: (Node | string)[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of kids) e.append(c);
  return e;
}

function fmtNum(x: number | undefined, unit: string): string {
  if (x === undefined) return "-";
  const units = ["", "K", "M", "G", "T", "P"];
  let i = 0;
  while (Math.abs(x) >= 1000 && i < units.length - 1) {
    x /= 1000;
    i++;
  }
  return `${x.toFixed(i === 0 ? 0 : 2)} ${units[i]}${unit}`;
}

// ---------------------------------------------------------------- header and timeline

function renderHeader(): void {
  $("title").textContent = `${data.model}: ${data.graph} (${data.target})`;
  $("dims").textContent = `costs at ${Object.entries(data.dims).map(([k, v]) => `${k}=${v}`).join(", ")}`;
  const tl = $("timeline");
  tl.replaceChildren(
    ...data.snapshots.map((s, i) => {
      const n = Object.keys(s.changes).length + s.removed.length;
      const b = el("button", { class: `pass${i === state.snap ? " current" : ""}`, "data-index": String(i), title: `${s.pass}: ${n} function(s) changed, ${s.ms.toFixed(1)} ms` }, s.pass.replace(/\{.*\}$/, "{..}"));
      b.onclick = () => setSnap(i);
      return b;
    }),
  );
  const s = snapshot();
  const changed = Object.entries(s.changes);
  $("pass-name").textContent = `${state.snap}/${data.snapshots.length - 1} ${s.pass}`;
  $("pass-summary").textContent =
    state.snap === 0
      ? "the traced module"
      : changed.length + s.removed.length === 0
        ? "no change"
        : `${changed.filter(([, c]) => c.status === "added").length} function(s) added, ${changed.filter(([, c]) => c.status === "changed").length} changed, ${s.removed.length} removed`;
}

function setSnap(i: number): void {
  state.snap = Math.max(0, Math.min(data.snapshots.length - 1, i));
  if (!keyOf(state.func)) state.func = data.entry;
  state.selected = undefined;
  render();
}

// ---------------------------------------------------------------- hierarchy

function renderTree(): void {
  const fs = functions();
  const changes = snapshot().changes;
  const seen = new Set<string>();
  const item = (f: ViewFunction, label: string, depth: number): HTMLElement => {
    const key = keyOf(f.name)!;
    const li = el("li");
    const kind = f.attrs["role"] === "kernel" ? `kernel ${f.attrs["fusion"] ?? ""}` : (f.attrs["role"] ?? "");
    const a = el("a", { class: `fn${f.name === state.func ? " current" : ""}${changes[key] ? ` ${changes[key]!.status}` : ""}`, "data-func": f.name, href: "#" }, label, el("span", { class: "kind" }, kind));
    a.onclick = (e) => {
      e.preventDefault();
      open(f.name);
    };
    li.append(a);
    if (seen.has(f.name) || depth > 6) return li;
    seen.add(f.name);
    // The callees, once each, with how many call sites and the first scopes.
    const calls = new Map<string, ViewOp[]>();
    for (const op of f.ops) if (op.callee !== undefined && fs.has(op.callee)) calls.set(op.callee, [...(calls.get(op.callee) ?? []), op]);
    if (calls.size) {
      const ul = el("ul");
      for (const [name, sites] of calls) {
        const scopes = sites.map((s) => s.scope).filter(Boolean);
        const where = sites.length > 1 ? ` x${sites.length}` : scopes[0] ? ` (${scopes[0]})` : "";
        ul.append(item(fs.get(name)!, `${name}${where}`, depth + 1));
      }
      li.append(ul);
    }
    return li;
  };
  const entry = fs.get(data.entry);
  const ul = el("ul");
  if (entry) ul.append(item(entry, entry.name, 0));
  // Functions no call reaches (a stage split's, or dead ones) still get a line.
  for (const f of fs.values()) if (!seen.has(f.name)) ul.append(item(f, f.name, 0));
  if (snapshot().removed.length) ul.append(el("li", { class: "removed" }, `removed by this pass: ${snapshot().removed.join(", ")}`));
  $("tree").replaceChildren(ul);
}

// ---------------------------------------------------------------- graph

let layout: Layout | undefined;
/** Layouts by snapshot and function: selecting an op redraws without laying out again. */
const layouts = new Map<string, Layout>();
const view = { x: 0, y: 0, w: 100, h: 100 };
/** The graph the view box was fitted to. */
let shown = "";

function setViewBox(svg: SVGSVGElement): void {
  svg.setAttribute("viewBox", `${view.x} ${view.y} ${view.w} ${view.h}`);
}

function renderGraph(): void {
  const fs = functions();
  const f = fs.get(state.func)!;
  const cacheKey = `${state.snap}:${f.name}`;
  if (!layouts.has(cacheKey)) layouts.set(cacheKey, layoutFunction(f, (n) => fs.get(n)));
  layout = layouts.get(cacheKey)!;
  const change = snapshot().changes[keyOf(f.name)!];
  const changedOps = new Set(change?.ops ?? []);
  const svg = document.createElementNS(SVG, "svg");
  svg.id = "graph-svg";
  const host = $("graph");
  if (shown !== cacheKey) {
    // A new graph: fit its width, start at the top.
    const ratio = host.clientHeight / Math.max(1, host.clientWidth);
    view.w = Math.max(layout.width, 600);
    view.h = Math.max(view.w * ratio, 200);
    view.x = (layout.width - view.w) / 2;
    view.y = 0;
    shown = cacheKey;
  }
  setViewBox(svg);
  const defs = document.createElementNS(SVG, "defs");
  defs.innerHTML = `<marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#8a94a6"/></marker>`;
  svg.append(defs);
  for (const k of layout.kernels) {
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("class", `kernel${changedOps.has(k.op.id) ? " changed" : ""}${state.selected?.kind === "kernel" && state.selected.op === k.op.id ? " selected" : ""}`);
    g.setAttribute("data-kernel", k.callee.name);
    g.setAttribute("data-op", String(k.op.id));
    const r = document.createElementNS(SVG, "rect");
    r.setAttribute("x", String(k.x - k.w / 2));
    r.setAttribute("y", String(k.y - k.h / 2 - 14));
    r.setAttribute("width", String(k.w));
    r.setAttribute("height", String(k.h + 14));
    r.setAttribute("rx", "6");
    const t = document.createElementNS(SVG, "text");
    t.setAttribute("x", String(k.x - k.w / 2 + 6));
    t.setAttribute("y", String(k.y - k.h / 2 - 2));
    t.textContent = `kernel ${k.callee.attrs["fusion"] ?? k.callee.name}${k.op.dispatch ? `: ${k.op.dispatch.split(";")[0]!.slice(0, 40)}` : ""}`;
    g.append(r, t);
    g.onclick = (e) => {
      e.stopPropagation();
      select({ kind: "kernel", op: k.op.id });
    };
    svg.append(g);
  }
  for (const e of layout.edges) {
    if (e.points.length < 2) continue;
    const p = document.createElementNS(SVG, "path");
    p.setAttribute("d", `M ${e.points.map((q) => `${q.x} ${q.y}`).join(" L ")}`);
    p.setAttribute("class", "edge");
    p.setAttribute("marker-end", "url(#arrow)");
    svg.append(p);
  }
  for (const n of layout.nodes) svg.append(nodeElement(n, n.kernel === undefined ? changedOps.has(n.op?.id ?? -1) : isChangedInKernel(n)));
  svg.onclick = () => select(undefined);
  enablePanZoom(svg);
  host.replaceChildren(svg);
  const crumbs = $("crumbs");
  crumbs.replaceChildren(
    ...[...state.history, state.func].map((name, i, all) => {
      const a = el("a", { href: "#", "data-func": name }, `@${name}`);
      a.onclick = (e) => {
        e.preventDefault();
        state.history = all.slice(0, i);
        state.func = name;
        state.selected = undefined;
        render();
      };
      return a;
    }),
  );
  const c = f.cost;
  $("func-summary").textContent = `${f.ops.length} ops${c ? `, one call: ${fmtNum(c.flops, "FLOP")}, ${fmtNum(c.bytes, "B")} moved, ${c.ops} ops executed` : ""}${change ? ` | this pass: ${change.status}, ${change.ops.length} op(s) new, ${change.removed} gone` : ""}`;
}

function isChangedInKernel(n: LaidNode): boolean {
  const key = keyOf(n.func);
  return key !== undefined && n.op !== undefined && (snapshot().changes[key]?.ops.includes(n.op.id) ?? false);
}

function nodeElement(n: LaidNode, changed: boolean): SVGGElement {
  const g = document.createElementNS(SVG, "g");
  const sel = state.selected;
  const isSel = sel?.kind === "op" && n.op !== undefined && sel.op === n.op.id && sel.func === n.func && sel.kernel === n.kernel;
  g.setAttribute("class", `node ${n.kind}${changed ? " changed" : ""}${isSel ? " selected" : ""}`);
  if (n.op) g.setAttribute("data-op", String(n.op.id));
  g.setAttribute("data-func", n.func);
  if (n.kernel !== undefined) g.setAttribute("data-in-kernel", String(n.kernel));
  const r = document.createElementNS(SVG, "rect");
  r.setAttribute("x", String(n.x - n.w / 2));
  r.setAttribute("y", String(n.y - n.h / 2));
  r.setAttribute("width", String(n.w));
  r.setAttribute("height", String(n.h));
  r.setAttribute("rx", n.kind === "param" || n.kind === "return" ? "12" : "4");
  const t = document.createElementNS(SVG, "text");
  t.setAttribute("x", String(n.x));
  t.setAttribute("y", String(n.y - (n.sub ? 4 : -4)));
  t.setAttribute("class", "title");
  t.textContent = n.title;
  g.append(r, t);
  if (n.sub) {
    const s = document.createElementNS(SVG, "text");
    s.setAttribute("x", String(n.x));
    s.setAttribute("y", String(n.y + 12));
    s.setAttribute("class", "sub");
    s.textContent = n.sub;
    g.append(s);
  }
  g.onclick = (e) => {
    e.stopPropagation();
    if (n.op) select({ kind: "op", func: n.func, op: n.op.id, ...(n.kernel !== undefined ? { kernel: n.kernel } : {}) });
  };
  if (n.kind === "call" && n.op?.callee) g.ondblclick = () => open(n.op!.callee!);
  return g;
}

function enablePanZoom(svg: SVGSVGElement): void {
  let drag: { x: number; y: number } | undefined;
  svg.onwheel = (e) => {
    e.preventDefault();
    const k = Math.exp(e.deltaY * 0.0015);
    const rect = svg.getBoundingClientRect();
    const px = view.x + ((e.clientX - rect.left) / rect.width) * view.w;
    const py = view.y + ((e.clientY - rect.top) / rect.height) * view.h;
    view.x = px - (px - view.x) * k;
    view.y = py - (py - view.y) * k;
    view.w *= k;
    view.h *= k;
    setViewBox(svg);
  };
  svg.onpointerdown = (e) => {
    drag = { x: e.clientX, y: e.clientY };
  };
  svg.onpointermove = (e) => {
    if (!drag) return;
    const rect = svg.getBoundingClientRect();
    view.x -= ((e.clientX - drag.x) / rect.width) * view.w;
    view.y -= ((e.clientY - drag.y) / rect.height) * view.h;
    drag = { x: e.clientX, y: e.clientY };
    setViewBox(svg);
  };
  svg.onpointerup = svg.onpointerleave = () => {
    drag = undefined;
  };
}

/** Scrolls the graph so that the node (or kernel box) is in view. */
function reveal(x: number, y: number): void {
  const svg = document.getElementById("graph-svg") as unknown as SVGSVGElement | null;
  if (!svg) return;
  view.x = x - view.w / 2;
  view.y = y - view.h / 3;
  setViewBox(svg);
}

// ---------------------------------------------------------------- details

function sourceLine(loc: string | undefined): HTMLElement {
  if (!loc) return el("p", { class: "muted" }, "no source location");
  const m = /^(.*):(\d+):(\d+)$/.exec(loc);
  const text = m ? data.sources[m[1]!]?.[Number(m[2])] : undefined;
  return el("div", { class: "source" }, el("div", { id: "op-source" }, loc), el("pre", { id: "source-text" }, text === undefined ? "(source file not available)" : text.trim()));
}

function table(rows: [string, string][]): HTMLTableElement {
  return el("table", {}, ...rows.map(([k, v]) => el("tr", {}, el("th", {}, k), el("td", {}, v))));
}

function opDetails(f: ViewFunction, op: ViewOp): HTMLElement[] {
  const rows: [string, string][] = [["op", op.callee !== undefined ? `call @${op.callee}` : op.op], ["function", `@${f.name}`]];
  if (op.scope) rows.push(["scope", op.scope]);
  for (const r of op.results) rows.push([r.name, r.type]);
  op.operands.forEach((o, i) => {
    const w = o.startsWith("@") ? f.weights.find((x) => x.ref === o) : undefined;
    const p = f.params.find((x) => x.name === o);
    rows.push([`operand ${i}`, `${o}${w ? `: ${w.type} (${fmtNum(w.bytes, "B")})` : p ? `: ${p.type}` : ""}`]);
  });
  for (const [k, v] of op.attrs) rows.push([k, v]);
  if (op.dispatch) rows.push(["kernels", op.dispatch]);
  rows.push(["FLOPs", fmtNum(op.flops, "FLOP")], ["bytes", fmtNum(op.bytes, "B")]);
  const out: HTMLElement[] = [el("h3", { id: "details-title" }, op.callee !== undefined ? `call @${op.callee}` : op.op), table(rows), el("h4", {}, "model source"), sourceLine(op.loc)];
  if (op.callee !== undefined && functions().has(op.callee)) {
    const b = el("button", { id: "open-callee" }, `open @${op.callee}`);
    b.onclick = () => open(op.callee!);
    out.push(b);
  }
  out.push(el("pre", { class: "ir-line" }, op.line));
  return out;
}

function functionDetails(f: ViewFunction): HTMLElement[] {
  const rows: [string, string][] = Object.entries(f.attrs).map(([k, v]) => [k, v]);
  if (f.cost) rows.push(["FLOPs / call", fmtNum(f.cost.flops, "FLOP")], ["bytes / call", fmtNum(f.cost.bytes, "B")], ["ops executed", String(f.cost.ops)]);
  const sites: string[] = [];
  for (const g of functions().values()) for (const op of g.ops) if (op.callee === f.name) sites.push(`@${g.name}${op.scope ? ` ${op.scope}` : ""}`);
  if (sites.length) rows.push(["called from", sites.length > 6 ? `${sites.slice(0, 3).join(", ")} ... ${sites.slice(-2).join(", ")} (${sites.length} sites)` : sites.join(", ")]);
  const weights = el("table", { class: "weights" }, el("tr", {}, el("th", {}, "weight"), el("th", {}, "type"), el("th", {}, "bytes")), ...f.weights.map((w) => el("tr", {}, el("td", {}, w.name), el("td", {}, w.type), el("td", {}, fmtNum(w.bytes, "B")))));
  const total = f.weights.reduce((a, w) => a + w.bytes, 0);
  const results = el("table", {}, ...f.results.map((r, i) => el("tr", {}, el("th", {}, r.name), el("td", {}, `${f.returns[i]}: ${r.type}`))));
  return [el("h3", { id: "details-title" }, `@${f.name}`), table(rows), el("h4", {}, `results (${f.results.length})`), results, el("h4", {}, `weights (${f.weights.length}, ${fmtNum(total, "B")} per call site)`), weights];
}

function renderDetails(): void {
  const fs = functions();
  const f = fs.get(state.func)!;
  const sel = state.selected;
  let content: HTMLElement[];
  if (sel?.kind === "op") {
    const g = fs.get(sel.func)!;
    content = opDetails(g, g.ops[sel.op]!);
    if (sel.kernel !== undefined) content.unshift(el("p", { class: "muted" }, `inside kernel @${sel.func}`));
  } else if (sel?.kind === "kernel") {
    const op = f.ops[sel.op]!;
    const k = fs.get(op.callee!)!;
    content = [el("h3", { id: "details-title" }, `kernel @${k.name}`), table([["fusion", k.attrs["fusion"] ?? "-"], ["kernels", op.dispatch ?? "one fused kernel (no run-time choice)"], ["ops", String(k.ops.length)], ["FLOPs", fmtNum(op.flops, "FLOP")], ["bytes", fmtNum(op.bytes, "B")]]), el("h4", {}, "model source"), sourceLine(op.loc), el("pre", { class: "ir" }, k.text)];
  } else {
    content = functionDetails(f);
  }
  $("details").replaceChildren(...content);
}

function select(s: typeof state.selected): void {
  state.selected = s;
  renderGraph();
  renderDetails();
}

function open(name: string): void {
  if (name === state.func) return;
  // The breadcrumbs are the path walked from the entry: going back up truncates it.
  const i = state.history.indexOf(name);
  state.history = i >= 0 ? state.history.slice(0, i) : [...state.history, state.func];
  state.func = name;
  state.selected = undefined;
  render();
}

// ---------------------------------------------------------------- search

interface Hit {
  func: string;
  op: number;
  text: string;
}

function search(q: string): Hit[] {
  const needle = q.trim().toLowerCase();
  if (!needle) return [];
  const hits: Hit[] = [];
  for (const f of functions().values()) {
    for (const op of f.ops) {
      const names = [...op.results.map((r) => r.name), ...op.operands.filter((o) => o.startsWith("@"))];
      if (op.scope.toLowerCase().includes(needle) || names.some((n) => n.toLowerCase().includes(needle)) || (op.callee ?? "").toLowerCase().includes(needle)) {
        hits.push({ func: f.name, op: op.id, text: `@${f.name}: ${op.callee !== undefined ? `call @${op.callee}` : op.op}${op.scope ? ` [${op.scope}]` : ""} ${op.results.map((r) => r.name).join(", ")}` });
      }
      if (hits.length >= 200) return hits;
    }
  }
  return hits;
}

function renderSearch(): void {
  const hits = search(($("search") as HTMLInputElement).value);
  $("search-results").replaceChildren(
    ...hits.map((h) => {
      const li = el("li", { "data-func": h.func, "data-op": String(h.op) }, h.text);
      li.onclick = () => {
        state.func = h.func;
        state.selected = { kind: "op", func: h.func, op: h.op };
        render();
        const n = layout?.nodes.find((x) => x.op?.id === h.op && x.kernel === undefined);
        if (n) reveal(n.x, n.y);
      };
      return li;
    }),
  );
  $("search-count").textContent = hits.length ? `${hits.length}${hits.length >= 200 ? "+" : ""} match(es)` : "";
}

// ---------------------------------------------------------------- wiring

function render(): void {
  renderHeader();
  renderTree();
  renderGraph();
  renderDetails();
}

$("prev-pass").onclick = () => setSnap(state.snap - 1);
$("next-pass").onclick = () => setSnap(state.snap + 1);
($("search") as HTMLInputElement).oninput = renderSearch;
document.addEventListener("keydown", (e) => {
  if ((e.target as HTMLElement).tagName === "INPUT") return;
  if (e.key === "ArrowLeft") setSnap(state.snap - 1);
  if (e.key === "ArrowRight") setSnap(state.snap + 1);
});
render();
window.lingcViewReady = performance.now();
