/** The float literal text both GPU renderers write (WGSL and CUDA C++). */
import { describe, expect, it } from "vitest";
import { f32Text } from "../../backends/kernels/kir";

describe("f32Text", () => {
  it("writes the shortest text that reads back as the same f32, keeping the sign of zero", () => {
    expect(f32Text(3)).toBe("3.0f");
    expect(f32Text(0.5)).toBe("0.5f");
    expect(f32Text(0.1)).toBe("0.1f");
    expect(f32Text(1e-6)).toBe("0.000001f");
    expect(f32Text(0)).toBe("0.0f");
    expect(f32Text(-0)).toBe("-0.0f");
    expect(f32Text(3.4028234663852886e38)).toBe("3.4028235e+38f");
    const t = f32Text(Math.PI);
    expect(Math.fround(Number(t.slice(0, -1)))).toBe(Math.fround(Math.PI));
  });
});
