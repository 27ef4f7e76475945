/** Safetensors: round trips for every dtype, and a clear error for each kind of corruption. */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LingcError } from "../../ir/errors";
import { Tensor } from "../../ir/tensor";
import { readAllSafetensors, SafetensorsFile, writeSafetensors } from "../../backends/weights/safetensors";
import { scratchDir } from "../support/paths";

const dir = scratchDir();

function fileWithHeader(name: string, header: unknown, dataBytes: number, lengthOverride?: bigint): string {
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(lengthOverride ?? BigInt(json.length));
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
  return path;
}

function errorOf(path: string): string {
  try {
    SafetensorsFile.open(path).close();
  } catch (e) {
    expect(e).toBeInstanceOf(LingcError);
    return (e as Error).message;
  }
  throw new Error("expected an error");
}

describe("safetensors", () => {
  it("round-trips every dtype lingc computes with", () => {
    const values = [0, 1, -2.5, 3.140625, 100, -0.0078125];
    const tensors: Record<string, Tensor> = {
      f32: Tensor.from("f32", [2, 3], [0.1, 1e-30, -7, 3e38, -0.5, 2]),
      f16: Tensor.from("f16", [6], values),
      bf16: Tensor.from("bf16", [3, 2], values),
      e4m3: Tensor.from("f8e4m3fn", [6], values),
      e5m2: Tensor.from("f8e5m2", [6], values),
      i64: Tensor.from("i64", [3], [0, -1, 2 ** 40]),
      i32: Tensor.from("i32", [2], [-5, 7]),
      u8: Tensor.from("u8", [2], [0, 255]),
      bool: Tensor.from("bool", [2], [1, 0]),
      empty: Tensor.from("f32", [0, 4], []),
    };
    const path = join(dir, "all.safetensors");
    writeSafetensors(path, tensors, { format: "pt" });
    const back = readAllSafetensors(path);
    for (const [k, t] of Object.entries(tensors)) {
      expect(back[k]!.dtype).toBe(t.dtype);
      expect(back[k]!.shape).toEqual(t.shape);
      expect(Array.from(back[k]!.data)).toEqual(Array.from(t.data));
    }
    // The same tensors give the same bytes.
    const again = join(dir, "again.safetensors");
    writeSafetensors(again, tensors, { format: "pt" });
    expect(readFileSync(again).equals(readFileSync(path))).toBe(true);
  });

  it("refuses an absurd header length", () => {
    expect(errorOf(fileWithHeader("absurd.safetensors", {}, 0, 1n << 60n))).toMatch(/absurd\.safetensors: header length \d+ is absurd/);
  });

  it("refuses a header that runs past the end of the file", () => {
    expect(errorOf(fileWithHeader("long.safetensors", {}, 0, 5000n))).toMatch(/runs past the end/);
  });

  it("refuses a truncated data section, naming the tensor", () => {
    const h = { a: { dtype: "F32", shape: [4], data_offsets: [0, 16] } };
    expect(errorOf(fileWithHeader("trunc.safetensors", h, 8))).toMatch(/tensor "a": its data ends at byte 16 of the data section, which has only 8 bytes/);
  });

  it("refuses overlaps, holes, bad dtypes, bad shapes and byte-count mismatches", () => {
    const overlap = { a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [2], data_offsets: [4, 12] } };
    expect(errorOf(fileWithHeader("overlap.safetensors", overlap, 12))).toMatch(/overlap/);
    const hole = { a: { dtype: "F32", shape: [1], data_offsets: [4, 8] } };
    expect(errorOf(fileWithHeader("hole.safetensors", hole, 8))).toMatch(/belong to no tensor/);
    expect(errorOf(fileWithHeader("dtype.safetensors", { a: { dtype: "F33", shape: [1], data_offsets: [0, 4] } }, 4))).toMatch(/unknown dtype "F33"/);
    expect(errorOf(fileWithHeader("shape.safetensors", { a: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, 4))).toMatch(/shape must be a list of non-negative integers/);
    expect(errorOf(fileWithHeader("count.safetensors", { a: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, 8))).toMatch(/needs 12 bytes but data_offsets cover 8/);
    const path = join(dir, "json.safetensors");
    writeFileSync(path, Buffer.concat([Buffer.from([4, 0, 0, 0, 0, 0, 0, 0]), Buffer.from("{nop")]));
    expect(errorOf(path)).toMatch(/header is not valid JSON/);
    writeFileSync(join(dir, "tiny.safetensors"), Buffer.from([1, 2]));
    expect(errorOf(join(dir, "tiny.safetensors"))).toMatch(/too short/);
  });
});
