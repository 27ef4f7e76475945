/**
 * Text prompts and text output through a checkpoint's tokenizer.json (tokenizers.js): the CLI and the
 * API encode a prompt to the ids the tokenizer gives, generate as from those ids, and decode the new
 * tokens; without a tokenizer.json, text is refused by name.
 */
import { cpSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { build } from "esbuild";
import { beforeAll, describe, expect, it } from "vitest";
import { lingcPlugin } from "../../compiler/esbuild-plugin";
import { load } from "../../compiler/api";
import { cli } from "../support/cli";
import { GOLDEN_DIR, scratchDir } from "../support/paths";
import { tinyTokenizer } from "../support/tokenizer";

const dir = scratchDir("lingc-text-");
const ck = join(dir, "ck");
const text = "the cat sat on the mat";

beforeAll(() => {
  cpSync(GOLDEN_DIR, ck, { recursive: true, filter: (src) => !src.endsWith("golden.safetensors") && !src.endsWith("train_golden.safetensors") });
  const { tokenizer, config } = tinyTokenizer();
  writeFileSync(join(ck, "tokenizer.json"), JSON.stringify(tokenizer));
  writeFileSync(join(ck, "tokenizer_config.json"), JSON.stringify(config));
});

describe("text in and out", () => {
  it("the API's tokenizer encodes to the pieces' ids and decodes back", async () => {
    const m = await load(ck);
    try {
      const ids = m.tokenizer!.encode(text);
      expect(ids).toEqual([31, 34, 37, 39, 31, 42]);
      expect(m.tokenizer!.decode(ids)).toBe(text);
    } finally {
      m.close();
    }
  });

  it("generate --prompt-text gives the decoded tokens of generate --prompt with the same ids", async () => {
    const byText = await cli("generate", ck, "--prompt-text", text, "--max-new-tokens", "6");
    expect(byText.code, byText.stderr).toBe(0);
    const byIds = await cli("generate", ck, "--prompt", "31,34,37,39,31,42", "--max-new-tokens", "6");
    expect(byIds.code, byIds.stderr).toBe(0);
    const ids = byIds.stdout.trim().split(" ").map(Number);
    expect(ids.length).toBeGreaterThan(0);
    const m = await load(ck);
    try {
      expect(byText.stdout).toBe(`${m.tokenizer!.decode(ids)}\n`);
    } finally {
      m.close();
    }
    expect(byText.stdout.trim().length).toBeGreaterThan(0);
  });

  it("refuses text without a tokenizer.json, and needs exactly one of --prompt and --prompt-text", async () => {
    const none = await cli("generate", GOLDEN_DIR, "--prompt-text", text, "--max-new-tokens", "2");
    expect(none.code).toBe(1);
    expect(none.stderr).toMatch(/--prompt-text needs a tokenizer\.json in the checkpoint folder, and .* has none/);
    const both = await cli("generate", ck, "--prompt", "1,2", "--prompt-text", text, "--max-new-tokens", "2");
    expect(both.code).toBe(2);
    const neither = await cli("generate", ck, "--max-new-tokens", "2");
    expect(neither.code).toBe(2);
    expect(neither.stderr).toContain("needs --prompt IDS or --prompt-text TEXT");
    const broken = join(dir, "ck-broken");
    cpSync(ck, broken, { recursive: true });
    writeFileSync(join(broken, "tokenizer.json"), "{ not json");
    const b = await cli("generate", broken, "--prompt-text", text, "--max-new-tokens", "2");
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/tokenizer\.json: not JSON/);
  });

  it("a web app's import of the config.json carries the tokenizer (embedded at build time)", async () => {
    const app = join(dir, "app.ts");
    writeFileSync(app, `import model from "./ck/config.json?lingc";\nexport const ids = model.tokenizer!.encode(${JSON.stringify(text)});\nexport const back = model.tokenizer!.decode(ids);\n`);
    const out = join(dir, "app.mjs");
    await build({ entryPoints: [app], bundle: true, format: "esm", platform: "node", outfile: out, plugins: [lingcPlugin()], logLevel: "silent" });
    const mod = (await import(pathToFileURL(out).href)) as { ids: number[]; back: string };
    expect(mod.ids).toEqual([31, 34, 37, 39, 31, 42]);
    expect(mod.back).toBe(text);
  }, 60_000);
});
