/** Helpers of the derivative tests: a seeded generator and central differences through the interpreter. */
import { expect } from "vitest";
import { interpret } from "../../ir/interpret";
import type { Module } from "../../ir/module";
import { Tensor } from "../../ir/tensor";

/** A seeded uniform generator on [0, 1) (xorshift), so failures reproduce. */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

/** A tensor of the given shape with values uniform in [-scale, scale). */
export function uniform(r: () => number, shape: number[], scale = 1): Tensor {
  return Tensor.from("f32", shape, Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => scale * (2 * r() - 1)));
}

export const noWeights = {
  get: (name: string): Tensor => {
    throw new Error(`no weight ${name}`);
  },
};

/**
 * Checks each element of `got` (the cotangent of input `name`) against the central difference of
 * loss(inputs) = sum(ct * y) where y is the module's result `y`, run by the interpreter.
 */
export function expectCentralDifferences(m: Module, inputs: Record<string, Tensor>, name: string, got: Tensor, opts: { step: number; tolerance: number }): void {
  const ct = inputs["ct"]!.data;
  const loss = (ins: Record<string, Tensor>) => {
    const y = interpret(m, ins, noWeights)["y"]!.data;
    let s = 0;
    for (let i = 0; i < y.length; i++) s += ct[i]! * y[i]!;
    return s;
  };
  const x = inputs[name]!;
  expect(got.shape, `d/d${name}`).toEqual(x.shape);
  for (let i = 0; i < x.numel; i++) {
    const bump = (d: number) => {
      const data = Float32Array.from(x.data);
      data[i]! += d;
      return loss({ ...inputs, [name]: Tensor.from("f32", x.shape, data) });
    };
    const want = (bump(opts.step) - bump(-opts.step)) / (2 * opts.step);
    expect(Math.abs(got.data[i]! - want), `d/d${name}[${i}]: ${got.data[i]} vs ${want}`).toBeLessThanOrEqual(opts.tolerance * Math.max(1, Math.abs(want)));
  }
}
