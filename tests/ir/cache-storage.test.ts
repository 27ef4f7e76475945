/**
 * cache_append and the rules that let backends grow a KV cache in place (ir/cache-storage.ts): its
 * value is concat's, the grown storage must be a graph input, it is grown once, and it is read only
 * by attention; each broken rule is refused naming the op and its line. The kv_cache declaration
 * carries a capacity.
 */
import { describe, expect, it } from "vitest";
import "../../ir/ops";
import { interpret } from "../../ir/interpret";
import { parseModule } from "../../ir/parse";
import { verifyModule } from "../../ir/verify";
import { parseCacheRules } from "../../ir/generation";
import { Tensor } from "../../ir/tensor";

const KV = "f32[B, 2, P, 4]";
const KV1 = "f32[B, 2, P+1, 4]";
const Q = "f32[B, 2, 1, 4]";

/** A decode-like module: a layer function grows its cache parameter; `body` replaces the layer's attention line. */
function decodeModule(layerBody: string, entryArg = "%past"): string {
  return `module @decode {
  func @layer(%q: ${Q}, %k: ${Q}, %cache: ${KV}) -> (out: ${Q}, present: ${KV1}) attributes {role = "layer"} {
${layerBody}
  }

  func @decode(%q: ${Q}, %past: ${KV}, %other: ${KV}) -> (out: ${Q}, present: ${KV1}) {
    %pre = neg(%other) : ${KV} scope("pre")
    %o, %p = call @layer(%q, %q, ${entryArg}) : ${Q}, ${KV1} scope("layers.0")
    return %o, %p
  }
}
`;
}

const GOOD = `    %grown = cache_append(%cache, %k) {axis = 2} : ${KV1} scope("attention")
    %o = attention(%q, %grown, %grown) {scale = 0.5, causal = true} : ${Q} scope("attention")
    return %o, %grown`;

describe("cache_append", () => {
  it("is concat's value (the interpreter)", () => {
    const m = parseModule(decodeModule(GOOD));
    verifyModule(m);
    const past = Tensor.from("f32", [1, 2, 3, 4], Array.from({ length: 24 }, (_, i) => i));
    const q = Tensor.from("f32", [1, 2, 1, 4], Array.from({ length: 8 }, (_, i) => 100 + i));
    const noWeights = { get: (name: string): Tensor => { throw new Error(`no weight ${name}`); } };
    const out = interpret(m, { q, past, other: past }, noWeights);
    const p = out["present"]!;
    expect(p.shape).toEqual([1, 2, 4, 4]);
    // Head 0: the 3 past rows, then the new row; head 1 likewise.
    expect(Array.from(p.data.subarray(0, 16))).toEqual([...Array.from({ length: 12 }, (_, i) => i), 100, 101, 102, 103]);
    expect(Array.from(p.data.subarray(16, 32))).toEqual([...Array.from({ length: 12 }, (_, i) => 12 + i), 104, 105, 106, 107]);
  });

  it("is accepted growing a graph input read by attention and returned", () => {
    expect(() => verifyModule(parseModule(decodeModule(GOOD)))).not.toThrow();
  });

  it("is refused growing a value computed in the graph, naming the call and its line", () => {
    const text = decodeModule(GOOD, "%pre");
    expect(() => verifyModule(parseModule(text))).toThrow(/^<input>:10:5: @layer grows its parameter %cache in place, so it must be passed a graph input, but %pre is computed in @decode \(in @decode, op call @layer\)$/);
  });

  it("is refused when its cache is read by an op other than attention", () => {
    const body = GOOD.replace("return %o, %grown", `%s = neg(%grown) : ${KV1} scope("x")\n    return %o, %s`);
    expect(() => verifyModule(parseModule(decodeModule(body)))).toThrow(/^<input>:5:5: %grown shares the storage of the cache %cache that cache_append grows in place, and is read by 'neg' \(in @layer\)/);
  });

  it("is refused when attention takes the cache as its query", () => {
    const body = `    %grown = cache_append(%cache, %k) {axis = 2} : ${KV1} scope("attention")
    %o = attention(%grown, %grown, %grown) {scale = 0.5, causal = true} : ${KV1} scope("attention")
    return %q, %grown`;
    expect(() => verifyModule(parseModule(decodeModule(body)))).toThrow(/^<input>:4:5: %grown shares .* is read by 'attention'/);
  });

  it("is refused growing one cache twice", () => {
    const body = GOOD.replace("%o = attention", `%again = cache_append(%cache, %k) {axis = 2} : ${KV1} scope("attention")\n    %o = attention`);
    expect(() => verifyModule(parseModule(decodeModule(body)))).toThrow(/^<input>:3:5: the storage of %cache \(in @layer\) is grown in place 2 times/);
  });
});

describe("the kv_cache declaration", () => {
  it("carries each cache's axis and capacity", () => {
    expect(parseCacheRules("past.*.key <- present.*.key axis 2 capacity 4096", "m")).toEqual([{ input: "past.*.key", output: "present.*.key", axis: 2, capacity: 4096 }]);
  });

  it("is refused without a capacity, or with one that is not a positive integer", () => {
    expect(() => parseCacheRules("past.*.key <- present.*.key axis 2", "module @decode")).toThrow(/module @decode: kv_cache entry 'past.\*.key <- present.\*.key axis 2' is not 'INPUT <- OUTPUT axis N capacity C'/);
    expect(() => parseCacheRules("past.*.key <- present.*.key axis 2 capacity 0", "module @decode")).toThrow(/capacity 0; it must be a positive integer/);
  });
});
