/** Parse and verify errors point at file:line:col and say what is wrong. */
import { describe, expect, it } from "vitest";
import { LingcError } from "../../ir/errors";
import { parseModule } from "../../ir/parse";
import { verifyModule } from "../../ir/verify";

const GOOD = `module @g {
  func @g(%x: f32[B, 4])
      weights(@w: f32[3, 4])
      -> (y: f32[B, 3]) {
    %y = linear(%x, @w) : f32[B, 3] scope("proj") loc("models/m.ts":3:7)
    return %y
  }
}
`;

function errorOf(text: string): LingcError {
  try {
    verifyModule(parseModule(text, "t.lir"));
  } catch (e) {
    if (e instanceof LingcError) return e;
    throw e;
  }
  throw new Error("expected an error");
}

describe("IR text errors", () => {
  it("accepts the well-formed module", () => {
    expect(() => verifyModule(parseModule(GOOD, "t.lir"))).not.toThrow();
  });

  const cases: [string, string, RegExp, [number, number]][] = [
    ["unknown op", GOOD.replace("linear(", "linaer("), /unknown op 'linaer'/, [5, 10]],
    ["undefined value", GOOD.replace("linear(%x", "linear(%z"), /undefined value %z/, [5, 17]],
    ["unknown weight", GOOD.replace("@w) :", "@v) :"), /unknown weight @v/, [5, 21]],
    ["bad dtype", GOOD.replace("f32[B, 3] scope", "f33[B, 3] scope"), /unknown dtype 'f33'/, [5, 27]],
    ["wrong result type", GOOD.replace(": f32[B, 3] scope", ": f32[B, 5] scope").replace("-> (y: f32[B, 3])", "-> (y: f32[B, 5])"), /declared f32\[B, 5\] but the op produces f32\[B, 3\]/, [5, 5]],
    ["shape mismatch", GOOD.replace("@w: f32[3, 4]", "@w: f32[3, 5]"), /input features/, [5, 5]],
    ["syntax", GOOD.replace("-> (y", "-> y"), /syntax error/, [4, 10]],
    ["bad character", GOOD.replace("%y = linear", "%y = linear$"), /unexpected character "\$"/, [5, 16]],
    ["bad dispatch condition", GOOD.replace('loc("models/m.ts":3:7)', 'loc("models/m.ts":3:7) dispatch("gemv if B < 2; gemm")'), /dispatch "gemv if B < 2; gemm": condition 'B < 2' is not 'SIZE <= SIZE', 'SIZE == SIZE' or 'SIZE % N == 0'/, [5, 74]],
    ["dispatch without a last resort", GOOD.replace('loc("models/m.ts":3:7)', 'loc("models/m.ts":3:7) dispatch("gemv if B == 1")'), /the last choice must have no condition/, [5, 74]],
    ["unknown attribute", GOOD.replace("linear(%x, @w)", "linear(%x, @w) {axis = 1}"), /has no attribute 'axis'/, [5, 26]],
    ["return type", GOOD.replace("-> (y: f32[B, 3])", "-> (y: f32[B, 2])"), /signature declares f32\[B, 2\]/, [6, 12]],
    ["duplicate value", GOOD.replace("return %y", "%y = linear(%x, @w) : f32[B, 3]\n    return %y"), /defined twice/, [6, 5]],
    ["unexpected end", GOOD.slice(0, GOOD.length - 3), /syntax error/, [7, 4]],
  ];

  it.each(cases)("%s", (_label, text, message, [line, col]) => {
    const e = errorOf(text);
    expect(e.message).toMatch(message);
    expect(e.pos).toEqual({ file: "t.lir", line, col });
    expect(e.message.startsWith(`t.lir:${line}:${col}: `)).toBe(true);
  });

  it("rejects a call cycle", () => {
    const text = `module @m {
  func @a(%x: f32[2]) -> (f32[2]) {
    %y = call @b(%x) : f32[2]
    return %y
  }
  func @b(%x: f32[2]) -> (f32[2]) {
    %y = call @a(%x) : f32[2]
    return %y
  }
}
`;
    expect(errorOf(text).message).toMatch(/recursive call cycle: @a -> @b -> @a/);
  });

  it("checks call arguments against the callee's symbols", () => {
    const text = `module @m {
  func @f(%x: f32[N, N]) -> (f32[N, N]) {
    %y = neg(%x) : f32[N, N]
    return %y
  }
  func @m(%x: f32[2, 3]) -> (f32[2, 3]) {
    %y = call @f(%x) : f32[2, 3]
    return %y
  }
}
`;
    const e = errorOf(text);
    expect(e.message).toMatch(/expected f32\[N, N\] \(axis 1 = 2\), got f32\[2, 3\]/);
    expect(e.pos).toMatchObject({ line: 7, col: 5 });
  });
});
