/** The text form is the IR: print -> parse -> print is the identity for every built-in config and graph. */
import { describe, expect, it } from "vitest";
import { parseModule } from "../../ir/parse";
import { printModule } from "../../ir/print";
import { verifyModule } from "../../ir/verify";
import { BUILTIN_CONFIGS } from "../../models/builtin";
import { buildLing2, GRAPHS } from "../../models/ling2";
import { resolveModel } from "../../models/resolve";

describe.each(Object.keys(BUILTIN_CONFIGS))("%s", (name) => {
  it.each(GRAPHS)("%s graph: print(parse(print(m))) === print(m), and the parsed module verifies", (graph) => {
    const m = buildLing2(resolveModel(name).config, graph);
    const text = printModule(m);
    const back = parseModule(text, `${graph}.lir`);
    verifyModule(back);
    expect(printModule(back)).toBe(text);
  });
});

describe("the Ling-1T forward dump", () => {
  const text = printModule(buildLing2(resolveModel("ling-1t").config, "forward"));

  it("has one function per layer kind plus the entry", () => {
    const funcs = [...text.matchAll(/^ {2}func @(\S+)\(/gm)].map((m) => m[1]);
    expect(funcs).toEqual(["dense_layer", "moe_layer", "mtp_layer", "forward"]);
  });

  it("calls each of the 80 layers once, with its checkpoint scope, and stays short", () => {
    const calls = [...text.matchAll(/call @(\w+)\(.*scope\("(model\.layers\.\d+)"\)/g)].map((m) => `${m[1]} ${m[2]}`);
    expect(calls.filter((c) => c.startsWith("dense_layer"))).toHaveLength(4);
    expect(calls.filter((c) => c.startsWith("moe_layer"))).toHaveLength(76);
    expect(calls).toContain("mtp_layer model.layers.80");
    expect(text.split("\n").length).toBeLessThan(300);
  });

  it("keeps expert weights stacked, never unrolled", () => {
    expect(text).toContain("@mlp.experts.*.gate_proj.weight: bf16[256, 2048, 8192]");
    expect(text).not.toMatch(/experts\.\d+\./);
  });
});
