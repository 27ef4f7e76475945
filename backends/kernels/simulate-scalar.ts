/**
 * The kir simulator's scalar arithmetic (backends/kernels/simulate.ts): each kir binary and unary
 * operator on one lane's value, in the expression's type (f32 rounded with Math.fround, i32 and u32
 * wrapped), as the CUDA renderer's C++ computes it.
 */
import type { KType } from "./kir";

export const f32 = Math.fround;
export const u32 = (x: number) => x >>> 0;
export const i32 = (x: number) => x | 0;

/** A value as type t holds it (bools as 0 / 1). */
export function fit(t: KType, x: number): number {
  if (t === "f32") return f32(x);
  if (t === "i32") return i32(x);
  if (t === "u32") return u32(x);
  return x ? 1 : 0;
}

export function binary(op: string, t: KType, a: number, b: number): number {
  switch (op) {
    case "+":
      return fit(t, a + b);
    case "-":
      return fit(t, a - b);
    case "*":
      return t === "i32" ? Math.imul(a, b) : t === "u32" ? u32(Math.imul(a, b)) : fit(t, a * b);
    case "/":
      if (t === "f32") return f32(a / b);
      if (b === 0) throw new Error("simulate: integer division by zero");
      return fit(t, Math.trunc(a / b));
    case "%":
      if (t === "f32") return f32(a % b);
      if (b === 0) throw new Error("simulate: integer remainder by zero");
      return fit(t, a % b);
    case "<":
      return a < b ? 1 : 0;
    case "<=":
      return a <= b ? 1 : 0;
    case ">":
      return a > b ? 1 : 0;
    case ">=":
      return a >= b ? 1 : 0;
    case "==":
      return a === b ? 1 : 0;
    case "!=":
      return a !== b ? 1 : 0;
    case "&&":
      return a && b ? 1 : 0;
    case "||":
      return a || b ? 1 : 0;
    case "min":
      return Math.min(a, b);
    case "max":
      return Math.max(a, b);
    case "^":
      return fit(t, a ^ b);
  }
  throw new Error(`simulate: no binary op ${op}`);
}

export function unary(op: string, t: KType, a: number): number {
  switch (op) {
    case "neg":
      return fit(t, -a);
    case "exp":
      return f32(Math.exp(a));
    case "exp2":
      return f32(Math.pow(2, a));
    case "log":
      return f32(Math.log(a));
    case "sqrt":
      return f32(Math.sqrt(a));
    case "rsqrt":
      return f32(1 / Math.sqrt(a));
    case "sin":
      return f32(Math.sin(a));
    case "cos":
      return f32(Math.cos(a));
    case "abs":
      return fit(t, Math.abs(a));
    case "not":
      return a ? 0 : 1;
  }
  throw new Error(`simulate: no unary op ${op}`);
}
