/**
 * The kernel schedule that GPU backends execute: the fused module flattened from its entry into a
 * list of steps, each one kernel of the plan (a call to a kernel function, or an op of its own), with
 * every tensor given a slot. Layer calls are expanded with their scopes (weights get their full
 * checkpoint names) and symbols are rewritten to the entry's (B, S, P). Reshapes become aliases of
 * their input's slot and constants become data, so neither is a step. An in_place op (cache_append)
 * is a step whose result is an alias of its first operand: it writes into that storage, a graph
 * input (ir/cache-storage.ts), which is marked as growing so the host gives it room; so is a kernel's
 * result that an in_place op inside it grew from one of its parameters (a fused cache append).
 */
import type { Dim } from "../ir/dim";
import { LingcError } from "../ir/errors";
import { hasTrait } from "../ir/ops";
import { scaleGridDims } from "../ir/quant";
import { scaleNameOf } from "./weights/bind";
import { Func, Module, Op, Value, joinScope } from "../ir/module";
import { TensorType } from "../ir/types";
import { callSymbols } from "../ir/call-symbols";

/**
 * Where a slot's storage comes from. "param" and "call" occur only in per-function schedules
 * (frames.ts): a parameter of the function, and a result of a layer call (the callee's storage).
 */
export type SlotSource = "input" | "weight" | "constant" | "computed" | "alias" | "param" | "call";

export interface Slot {
  id: number;
  /** Type in the entry's symbols. */
  type: TensorType;
  source: SlotSource;
  /** Full name of the IR value (observable), when it has one. */
  name?: string;
  /** Graph input name (source "input"). */
  input?: string;
  /** Full checkpoint name (source "weight"; a stacked weight keeps its `*`). */
  weight?: string;
  /** The constant op (source "constant"). */
  constant?: Op;
  /** The slot whose storage this one shares (source "alias"). */
  aliasOf?: number;
  /** Source "param": which parameter; source "call": which call site and which of its results. */
  param?: number;
  call?: { site: number; result: number };
  /**
   * The result of an in_place op (an alias of its first operand): its storage grown along `axis` to
   * `rows` (the rows the buffer needs room for).
   */
  grows?: { axis: number; rows: Dim };
  /** A storage an in_place op grows (a graph input, or a parameter of a frame): the axis its buffer has room along. */
  roomAxis?: number;
  /** A scaled fp8 value: the slot of its scale grid (f32; for a weight, HF's `<name>_scale_inv`). */
  scales?: number;
  /**
   * A scale grid of 1 x c activation groups stored K-block-major, [C / c][rows] (its type says so),
   * instead of row-major [rows][C / c]: a backend's choice for grids whose readers want that layout
   * (the CUDA backend's, for cuBLASLt's block-scaled GEMM). Gen.scaleIndex reads it either way.
   */
  kMajor?: boolean;
}

/**
 * The scale-grid slot that goes with a new slot of a scaled fp8 type: a weight's is the checkpoint's
 * `<name>_scale_inv`, a computed value's is computed beside it. Scaled values do not cross the other
 * boundaries (graph inputs, layer function parameters and results) yet.
 */
export function scaleSlotOf(s: Omit<Slot, "id">): Omit<Slot, "id"> {
  const q = s.type.quant!;
  // The factors, in f32 whatever dtype a checkpoint stores them in: hosts decode a weight's at load
  // (ir/quant.ts scaleFactors; the cuda target refuses other stored dtypes).
  const type = new TensorType("f32", scaleGridDims(s.type.shape, q.granularity));
  if (s.source === "weight") return { type, source: "weight", weight: scaleNameOf(s.weight!) };
  if (s.source === "computed") return { type, source: "computed", name: s.name !== undefined ? `${s.name}.scale` : undefined };
  throw new LingcError(`a scaled fp8 value (${s.type}${s.name ? `, ${s.name}` : ""}) cannot be a ${s.source === "param" || s.source === "call" ? "layer function's parameter or result" : `graph ${s.source}`} yet`);
}

export interface Step {
  /** The op, or the call of a kernel function. */
  op: Op;
  /** The kernel function, for a fused kernel. */
  kernel?: Func;
  /** The ops the kernel runs: the kernel function's body, or just `op`. */
  ops: Op[];
  scope: string;
  /** Slots of the values the step reads (op operands, or the kernel's parameters and weights). */
  reads: Map<Value, number>;
  /** Slots of the values the step writes (op results, or the kernel's results). */
  writes: Map<Value, number>;
  /** Symbols of the ops' types -> entry symbols. */
  subst: ReadonlyMap<string, Dim>;
}

export interface Schedule {
  module: Module;
  slots: Slot[];
  steps: Step[];
  inputs: { name: string; slot: number }[];
  outputs: { name: string; slot: number }[];
}

/** The slot that holds the storage of `id` (following aliases). */
export function storageSlot(s: { slots: readonly Slot[] }, id: number): number {
  let slot = s.slots[id]!;
  while (slot.source === "alias") slot = s.slots[slot.aliasOf!]!;
  return slot.id;
}

/** The slot of a scaled value's scale grid, for a value step reads or writes (undefined: none). */
export function scaleSlotOfValue(s: { slots: readonly Slot[] }, step: Step, v: Value): number | undefined {
  const id = step.reads.get(v) ?? step.writes.get(v);
  return id === undefined ? undefined : s.slots[storageSlot(s, id)]!.scales;
}

/** The symbol a host binds to the capacity (rows along the growth axis) of a growing storage slot. */
export function capacitySymbol(slot: number): string {
  return `capacity_${slot}`;
}

/** The storage slot whose capacity a symbol is (capacitySymbol), or undefined for another symbol. */
export function capacitySlotOf(symbol: string): number | undefined {
  const m = /^capacity_(\d+)$/.exec(symbol);
  return m ? Number(m[1]) : undefined;
}

/** Adds a slot (and, for a scaled fp8 type, the slot of its scale grid); returns its id. */
export function addSlot(slots: Slot[], s: Omit<Slot, "id">): number {
  const id = slots.length;
  slots.push({ id, ...s });
  if (s.type.quant && s.source !== "alias") slots[id]!.scales = addSlot(slots, scaleSlotOf(s));
  return id;
}

/**
 * The slot of an op's result: a new computed slot, or for an in_place op's result an alias of its
 * first operand's slot that grows it, whose storage is then marked as having room.
 */
export function resultSlot(slots: Slot[], op: Op, i: number, type: TensorType, operand0: number | undefined, name: string | undefined): Omit<Slot, "id"> {
  if (i !== 0 || operand0 === undefined || !hasTrait(op.opName, "in_place")) return { type, source: "computed", name };
  const before = slots[operand0]!.type.shape;
  const axis = type.shape.findIndex((d, a) => !d.equals(before[a]!));
  if (axis < 0) return { type, source: "alias", aliasOf: operand0, name };
  slots[storageSlot({ slots }, operand0)]!.roomAxis = axis;
  return { type, source: "alias", aliasOf: operand0, name, grows: { axis, rows: type.shape[axis]! } };
}

/**
 * The slot of a kernel function's result: a new computed slot, or where the kernel grows one of its
 * parameters' storage in place (an in_place op of its body whose result it returns, such as a KV
 * cache append fused into the kernel that computes the new rows) an alias of that argument's slot,
 * as resultSlot makes for the op alone.
 */
export function kernelResultSlot(slots: Slot[], kernel: Func, i: number, type: TensorType, args: readonly number[], name: string | undefined): Omit<Slot, "id"> {
  const def = kernel.results[i]!.value.def;
  const k = def && hasTrait(def.opName, "in_place") ? kernel.params.indexOf(def.operands[0]!) : -1;
  return k < 0 ? { type, source: "computed", name } : resultSlot(slots, def!, 0, type, args[k], name);
}

export function buildSchedule(m: Module): Schedule {
  const entry = m.entry;
  if (!entry) throw new LingcError(`module @${m.name} has no entry function @${m.name}`);
  const slots: Slot[] = [];
  const steps: Step[] = [];
  const weights = new Map<string, number>();
  const newSlot = (s: Omit<Slot, "id">): number => addSlot(slots, s);
  const tr = (t: TensorType, subst: ReadonlyMap<string, Dim>) => new TensorType(t.dtype, t.shape.map((d) => d.substitute(subst)), t.quant);
  const weightSlot = (full: string, t: TensorType) => {
    let id = weights.get(full);
    if (id === undefined) weights.set(full, (id = newSlot({ type: t, source: "weight", weight: full })));
    return id;
  };

  const walk = (f: Func, args: number[], prefix: string, subst: ReadonlyMap<string, Dim>): number[] => {
    const env = new Map<Value, number>();
    f.params.forEach((p, i) => env.set(p, args[i]!));
    const get = (v: Value): number => {
      const hit = env.get(v);
      if (hit !== undefined) return hit;
      const id = weightSlot(joinScope(prefix, v.name!), v.type);
      env.set(v, id);
      return id;
    };
    const named = (v: Value) => (v.name !== undefined ? joinScope(prefix, v.name) : undefined);
    for (const op of f.body) {
      const scope = joinScope(prefix, op.scope);
      if (op.opName === "reshape") {
        env.set(op.results[0]!, newSlot({ type: tr(op.results[0]!.type, subst), source: "alias", aliasOf: get(op.operands[0]!), name: named(op.results[0]!) }));
        continue;
      }
      if (op.opName === "constant") {
        env.set(op.results[0]!, newSlot({ type: tr(op.results[0]!.type, subst), source: "constant", constant: op, name: named(op.results[0]!) }));
        continue;
      }
      const callee = op.opName === "call" ? m.getFunc(op.callee!)! : undefined;
      let inner = subst;
      if (callee) {
        const map = new Map<string, Dim>();
        for (const [k, v] of callSymbols(callee, op)) map.set(k, v.substitute(subst));
        inner = map;
      }
      if (callee && callee.role !== "kernel") {
        const outs = walk(callee, op.operands.map(get), scope, inner);
        op.results.forEach((r, i) => env.set(r, outs[i]!));
        continue;
      }
      const reads = new Map<Value, number>();
      const writes = new Map<Value, number>();
      if (callee) {
        callee.params.forEach((p, i) => reads.set(p, get(op.operands[i]!)));
        for (const w of callee.weights) reads.set(w, weightSlot(joinScope(scope, w.name!), w.type));
        callee.results.forEach((r, i) => {
          const args = callee.params.map((p) => reads.get(p)!);
          const id = newSlot(kernelResultSlot(slots, callee, i, tr(r.value.type, inner), args, r.value.name !== undefined ? joinScope(scope, r.value.name) : undefined));
          writes.set(r.value, id);
          env.set(op.results[i]!, id);
        });
      } else {
        for (const v of op.operands) reads.set(v, get(v));
        op.results.forEach((r, i) => {
          const id = newSlot(resultSlot(slots, op, i, tr(r.type, subst), op.operands.length ? get(op.operands[0]!) : undefined, named(r)));
          writes.set(r, id);
          env.set(r, id);
        });
      }
      steps.push({ op, kernel: callee, ops: callee ? callee.body : [op], scope, reads, writes, subst: inner });
    }
    return f.results.map((r) => get(r.value));
  };

  const inputs = entry.params.map((p) => ({ name: p.name!, slot: newSlot({ type: p.type, source: "input", input: p.name!, name: p.name }) }));
  const outs = walk(
    entry,
    inputs.map((x) => x.slot),
    "",
    new Map(),
  );
  return { module: m, slots, steps, inputs, outputs: entry.results.map((r, i) => ({ name: r.name!, slot: outs[i]! })) };
}
