/**
 * The import direction (DESIGN "Where the design goes next"): ir imports nothing outside ir; the
 * passes, the DSL and the analyses import ir (and themselves); backends import ir and shared backend
 * code, never models/, the DSL or the passes; models import the DSL and ir. Drivers (the CLI, the
 * driver, the esbuild plugin) may import anything. Checked over every source file's imports.
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { ROOT } from "../support/paths";

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) return sources(p);
    return /\.ts$/.test(n) && !n.endsWith(".d.ts") ? [p] : [];
  });
}

/** Relative import specifiers of a file (static imports, re-exports and dynamic imports). */
function imports(file: string): string[] {
  const text = readFileSync(file, "utf8");
  const out: string[] = [];
  for (const m of text.matchAll(/(?:import|export)\s[^"';]*?from\s+"([^"]+)"|import\(\s*"([^"]+)"\s*\)|^import\s+"([^"]+)"/gm)) {
    const spec = m[1] ?? m[2] ?? m[3]!;
    if (spec.startsWith(".")) out.push(spec);
  }
  return out;
}

/** Where each layer may import from (folders relative to the repository root). */
const RULES: { layer: string; allowed: string[] }[] = [
  { layer: "ir", allowed: ["ir"] },
  { layer: "compiler/passes", allowed: ["ir", "compiler/passes"] },
  { layer: "compiler/dsl", allowed: ["ir", "compiler/dsl"] },
  { layer: "compiler/analysis", allowed: ["ir", "compiler/analysis"] },
  { layer: "backends", allowed: ["ir", "backends"] },
  { layer: "models", allowed: ["ir", "compiler/dsl", "models"] },
];

describe("layering", () => {
  it.each(RULES)("$layer imports only from $allowed", ({ layer, allowed }) => {
    const bad: string[] = [];
    const files = sources(join(ROOT, layer));
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      for (const spec of imports(f)) {
        const target = relative(ROOT, resolve(dirname(f), spec));
        if (!allowed.some((a) => target === a || target.startsWith(`${a}/`))) bad.push(`${relative(ROOT, f)} imports ${spec} (${target})`);
      }
    }
    expect(bad).toEqual([]);
  });

  it("the check sees imports (a file known to import ir is found)", () => {
    expect(imports(join(ROOT, "backends/backend.ts")).some((s) => s.startsWith("../ir/"))).toBe(true);
  });
});
