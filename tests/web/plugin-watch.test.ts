/**
 * The esbuild plugin in watch mode: editing the config.json an app imports (`./config.json?lingc`)
 * rebuilds the bundle with the model compiled from the new config.
 */
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { context, type Plugin } from "esbuild";
import { describe, expect, it } from "vitest";
import { lingcPlugin } from "../../compiler/esbuild-plugin";
import { GOLDEN_DIR, scratchDir } from "../support/paths";

describe("the esbuild plugin in watch mode", () => {
  it("rebuilds when the imported config.json changes", async () => {
    const dir = scratchDir("lingc-watch-");
    copyFileSync(join(GOLDEN_DIR, "config.json"), join(dir, "config.json"));
    writeFileSync(join(dir, "app.ts"), 'import model from "./config.json?lingc";\nexport const graphs = Object.keys(model.artifacts);\n');
    const out = join(dir, "out.js");
    // Each finished build hands its vocabulary (from the compiled artifacts) to the waiting test.
    const waiting: ((vocab: string) => void)[] = [];
    const next = () => new Promise<string>((resolve) => waiting.push(resolve));
    const report: Plugin = {
      name: "report",
      setup(b) {
        b.onEnd((r) => {
          const vocab = r.errors.length ? `errors: ${r.errors.map((e) => e.text).join("; ")}` : (/\bvocab"?\s*:\s*"(\d+)"/.exec(readFileSync(out, "utf8"))?.[1] ?? "none");
          waiting.shift()?.(vocab);
        });
      },
    };
    const first = next();
    const ctx = await context({ entryPoints: [join(dir, "app.ts")], bundle: true, outfile: out, format: "esm", platform: "browser", logLevel: "silent", plugins: [lingcPlugin(), report] });
    try {
      await ctx.watch();
      expect(await first).toBe("512");
      const second = next();
      const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
      cfg["vocab_size"] = 520;
      writeFileSync(join(dir, "config.json"), JSON.stringify(cfg, null, 1));
      expect(await second).toBe("520");
    } finally {
      await ctx.dispose();
    }
  }, 60_000);
});
