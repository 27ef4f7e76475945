/**
 * Element types. Float types narrower than f32 are stored by the interpreter as f32 values that
 * have been rounded to the narrow format (see numerics.ts); integer and bool types as exact doubles.
 */

export const DTYPES = ["f32", "f16", "bf16", "f8e4m3fn", "f8e5m2", "i32", "i64", "bool", "u8"] as const;
export type DType = (typeof DTYPES)[number];

type Kind = "float" | "int" | "bool";

const INFO: Record<DType, { bytes: number; kind: Kind }> = {
  f32: { bytes: 4, kind: "float" },
  f16: { bytes: 2, kind: "float" },
  bf16: { bytes: 2, kind: "float" },
  f8e4m3fn: { bytes: 1, kind: "float" },
  f8e5m2: { bytes: 1, kind: "float" },
  i32: { bytes: 4, kind: "int" },
  i64: { bytes: 8, kind: "int" },
  bool: { bytes: 1, kind: "bool" },
  u8: { bytes: 1, kind: "int" },
};

export function isDType(s: string): s is DType {
  return Object.prototype.hasOwnProperty.call(INFO, s);
}

export function byteSize(dt: DType): number {
  return INFO[dt].bytes;
}

export function isFloat(dt: DType): boolean {
  return INFO[dt].kind === "float";
}

export function isInt(dt: DType): boolean {
  return INFO[dt].kind === "int";
}

export function isFp8(dt: DType): boolean {
  return dt === "f8e4m3fn" || dt === "f8e5m2";
}

/** Inclusive value range of an integer dtype (i64 limited to what a double holds exactly). */
export function intRange(dt: DType): [number, number] {
  switch (dt) {
    case "i32":
      return [-(2 ** 31), 2 ** 31 - 1];
    case "u8":
      return [0, 255];
    case "bool":
      return [0, 1];
    default:
      return [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER];
  }
}
