/**
 * The module after each pass, as view data: each function is recorded once per distinct text, and a
 * snapshot says which ops a pass added (an op line the function did not have before) and which
 * functions it added, changed or removed. Value names are left out of the comparison: a pass that
 * renumbers values has not changed the op.
 */
import { costWalk } from "../../ir/analysis";
import { formatPos } from "../../ir/errors";
import type { Func, Module, Op, Value } from "../../ir/module";
import { getOp } from "../../ir/ops";
import { formatAttr, nameValues, printFunction, symbolRef, valueRef } from "../../ir/print";
import { formatDispatch } from "../../ir/dispatch";
import type { ViewData, ViewFunction, ViewOp, ViewSnapshot } from "./data";

/** The op with value names left out: what a pass must change for the op to count as changed. */
function opShape(op: ViewOp): string {
  return [op.op, op.callee ?? "", op.attrs.map(([k, v]) => `${k}=${v}`).join(","), op.results.map((r) => r.type).join(","), op.scope, op.loc ?? "", op.dispatch ?? "", op.operands.filter((o) => o.startsWith("@")).join(",")].join("|");
}

function viewFunction(f: Func, costs: ReturnType<typeof costWalk>): ViewFunction {
  const names = nameValues(f);
  const ref = (v: Value) => (v.kind === "weight" ? symbolRef(v.name!) : valueRef(names.get(v) ?? "?"));
  const text = printFunction(f);
  const lines = text.split("\n");
  const firstOp = lines.findIndex((l) => /^ {4}\S/.test(l) && !l.startsWith("    return"));
  const ops = f.body.map((op: Op, i): ViewOp => {
    const def = getOp(op.opName);
    const keys = def ? Object.keys(def.attrs).filter((k) => op.attrs[k] !== undefined) : Object.keys(op.attrs).sort();
    const c = costs.ops.get(op);
    return {
      id: i,
      op: op.opName,
      ...(op.callee !== undefined ? { callee: op.callee } : {}),
      operands: op.operands.map(ref),
      results: op.results.map((r) => ({ name: ref(r), type: r.type.toString() })),
      attrs: keys.map((k) => [k, formatAttr(def?.attrs[k]?.kind, op.attrs[k]!)]),
      scope: op.scope,
      ...(op.loc ? { loc: formatPos(op.loc) } : {}),
      ...(op.dispatch ? { dispatch: formatDispatch(op.dispatch) } : {}),
      ...(c ? { flops: c.flops, bytes: c.bytesRead + c.bytesWritten } : {}),
      line: (firstOp >= 0 ? lines[firstOp + i] : undefined)?.trim() ?? "",
    };
  });
  const fc = costs.functions.get(f);
  return {
    name: f.name,
    attrs: { ...f.attrs },
    params: f.params.map((p) => ({ name: ref(p), type: p.type.toString() })),
    weights: f.weights.map((w) => ({ name: w.name!, ref: symbolRef(w.name!), type: w.type.toString(), bytes: w.type.bytes(new Map()) })),
    results: f.results.map((r, i) => ({ name: r.name ?? `out${i}`, type: r.value.type.toString() })),
    returns: f.results.map((r) => ref(r.value)),
    ops,
    ...(fc ? { cost: { flops: fc.flops, bytes: fc.bytesRead + fc.bytesWritten, ops: fc.ops } } : {}),
    text,
  };
}

/** Collects view data over a pipeline: `record` is given the module before the first pass and after each. */
export class TimelineRecorder {
  readonly functions: Record<string, ViewFunction> = {};
  readonly snapshots: ViewSnapshot[] = [];
  private readonly byText = new Map<string, string>();
  private readonly counts = new Map<string, number>();

  constructor(private readonly dims: ReadonlyMap<string, number>) {}

  record(m: Module, pass: string | undefined, ms: number): void {
    const costs = costWalk(m, this.dims);
    const prev = this.snapshots[this.snapshots.length - 1];
    const prevByName = new Map((prev?.functions ?? []).map((k) => [this.functions[k]!.name, this.functions[k]!]));
    const snap: ViewSnapshot = { pass: pass ?? "input", ms, functions: [], changes: {}, removed: [] };
    for (const f of m.functions) {
      const vf = viewFunction(f, costs);
      const seen = this.byText.get(vf.text);
      let key = seen;
      if (key === undefined) {
        const n = this.counts.get(f.name) ?? 0;
        this.counts.set(f.name, n + 1);
        key = n === 0 ? f.name : `${f.name}#${n}`;
        this.byText.set(vf.text, key);
        this.functions[key] = vf;
      } else if (!this.functions[key]!.cost && vf.cost) {
        // The same text, reached from the entry this time: keep its cost.
        this.functions[key] = vf;
      }
      snap.functions.push(key);
      if (!prev) continue;
      const before = prevByName.get(f.name);
      if (before && before.text === vf.text) continue;
      const had = new Map<string, number>();
      for (const op of before?.ops ?? []) had.set(opShape(op), (had.get(opShape(op)) ?? 0) + 1);
      const added: number[] = [];
      for (const op of vf.ops) {
        const k = opShape(op);
        const left = had.get(k) ?? 0;
        if (left > 0) had.set(k, left - 1);
        else added.push(op.id);
      }
      const removed = [...had.values()].reduce((a, b) => a + b, 0);
      snap.changes[key] = { status: before ? "changed" : "added", ops: added, removed };
    }
    const now = new Set(m.functions.map((f) => f.name));
    snap.removed = [...prevByName.keys()].filter((n) => !now.has(n));
    this.snapshots.push(snap);
  }
}

/** The view data's `sources`: the text of every line an op points at, read with `read` (undefined: not available). */
export function sourceLines(functions: Record<string, ViewFunction>, read: (file: string) => string | undefined): ViewData["sources"] {
  const out: ViewData["sources"] = {};
  const files = new Map<string, string[] | undefined>();
  for (const f of Object.values(functions)) {
    for (const op of f.ops) {
      const m = op.loc ? /^(.*):(\d+):(\d+)$/.exec(op.loc) : null;
      if (!m) continue;
      const [, file, line] = m as unknown as [string, string, string];
      if (!files.has(file)) files.set(file, read(file)?.split("\n"));
      const text = files.get(file)?.[Number(line) - 1];
      if (text === undefined) continue;
      (out[file] ??= {})[Number(line)] = text;
    }
  }
  return out;
}
