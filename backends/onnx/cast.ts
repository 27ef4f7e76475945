/** The attributes of an ONNX Cast to a lingc dtype. */
import type { DType } from "../../ir/dtype";

const CODE: Record<DType, number> = { f32: 1, u8: 2, i32: 6, i64: 7, bool: 9, f16: 10, bf16: 16, f8e4m3fn: 17, f8e5m2: 19 };

export function castNode(to: DType): Record<string, number> {
  // e4m3fn saturates (ONNX default for float8); e5m2 overflows to infinity as lingc's cast does.
  return to === "f8e5m2" ? { to: CODE[to], saturate: 0 } : { to: CODE[to] };
}
