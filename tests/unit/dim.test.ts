/** Symbolic dimensions: canonical polynomials. */
import { describe, expect, it } from "vitest";
import { Dim, dim } from "../../ir/dim";

describe("Dim", () => {
  it("canonicalizes sums and products", () => {
    const B = dim("B");
    const S = dim("S");
    expect(B.mul(S).mul(8).toString()).toBe("B*S*8");
    expect(S.mul(B).mul(4).mul(2).equals(B.mul(S).mul(8))).toBe(true);
    expect(dim("P").add(1).toString()).toBe("P+1");
    expect(Dim.of(1).add(dim("P")).equals(dim("P").add(1))).toBe(true);
    expect(B.add(B).toString()).toBe("B*2");
    expect(Dim.of(3).mul(0).toString()).toBe("0");
  });

  it("substitutes and evaluates", () => {
    const d = dim("B").mul(dim("S")).add(dim("P"));
    expect(d.substitute(new Map([["S", dim("T").add(1)]])).toString()).toBe("B*T+B+P");
    expect(d.eval(new Map([["B", 2], ["S", 12], ["P", 5]]))).toBe(29);
    expect(() => d.eval(new Map([["B", 2]]))).toThrow(/symbol '[PS]' has no value/);
  });

  it("refuses negative, fractional and unsafe sizes", () => {
    expect(() => Dim.of(-1)).toThrow(/invalid dimension size/);
    expect(() => Dim.of(1.5)).toThrow(/invalid dimension size/);
    expect(() => Dim.of(2 ** 53).mul(2)).toThrow();
  });
});
