/** Safetensors: round trips for every dtype, and a clear error for each kind of corruption. */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { LingcError } from "../../ir/errors";
import { Tensor } from "../../ir/tensor";
import { readAllSafetensors, SafetensorsFile, tensorBytes, writeSafetensors } from "../../backends/weights/safetensors";
import { encodeBits } from "../../ir/numerics";
import { Seeded } from "../../compiler/cli/commands/init";
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
  it("bf16 bytes are encodeBits' for every kind of f32 (ties to even, carries into the exponent, infinities, NaN, subnormals)", () => {
    const bits = [0x3f808000, 0x3f818000, 0x3f80ffff, 0x7f7fffff, 0x7f800000, 0xff800000, 0x7fc00001, 0xffa00000, 0x00000001, 0x807fffff, 0, 0x80000000];
    const r = new Seeded(3);
    for (let i = 0; i < 200; i++) bits.push(Math.floor(r.next() * 2 ** 32));
    const data = new Float32Array(new Uint32Array(bits).buffer);
    const bytes = tensorBytes(new Tensor("bf16", [bits.length], data));
    const got = new Uint16Array(bytes.buffer, bytes.byteOffset, bits.length);
    for (let i = 0; i < bits.length; i++) expect(got[i], `0x${bits[i]!.toString(16)}`).toBe(encodeBits(data[i]!, "bf16"));
  });

  it("tensors made as they are written (lingc init) give the file eager ones give; a made tensor that is not the declared one is an error", () => {
    const a = Tensor.from("bf16", [2, 3], [1, 2, 3, 4, 5, 6]);
    const b = Tensor.from("f32", [4], [0.5, -1, 2, 8]);
    writeSafetensors(join(dir, "eager.safetensors"), { a, b });
    writeSafetensors(join(dir, "lazy.safetensors"), { a: { dtype: "bf16", shape: [2, 3], make: () => a }, b });
    expect(readFileSync(join(dir, "lazy.safetensors"))).toEqual(readFileSync(join(dir, "eager.safetensors")));
    expect(() => writeSafetensors(join(dir, "wrong.safetensors"), { a: { dtype: "bf16", shape: [3, 3], make: () => a } })).toThrow(/declared bf16 \[3,3\]/);
    expect(existsSync(join(dir, "wrong.safetensors"))).toBe(false);
  });

  it("Seeded.fill draws the values of as many next() calls", () => {
    const [x, y] = [new Seeded(7), new Seeded(7)];
    const out = new Float32Array(1000);
    x.fill(out, 1, 0.25);
    for (let i = 0; i < out.length; i++) expect(out[i]).toBe(Math.fround(1 + 0.25 * (2 * y.next() - 1)));
    expect(x.next()).toBe(y.next());
  });

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
