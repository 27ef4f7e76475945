/**
 * The browser path end to end: the demo page is built with the lingc esbuild plugin (ling-tiny
 * compiled to WGSL during the build), served on localhost with the golden checkpoint's weights, and
 * driven in headless Chromium (system chromium, SwiftShader's WebGPU) with playwright-core.
 */
import { copyFileSync, existsSync, mkdirSync, writeFileSync, createReadStream, statSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { build } from "esbuild";
import { chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { lingcPlugin } from "../../compiler/esbuild-plugin";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { GOLDEN_DIR, GOLDEN_FILE, ROOT, scratchDir } from "../support/paths";

const CHROMIUM = "/usr/bin/chromium";
const out = scratchDir("lingc-web-");
let server: Server;
let base = "";

beforeAll(async () => {
  await build({
    entryPoints: [join(ROOT, "web/main.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    outfile: join(out, "main.js"),
    plugins: [lingcPlugin()],
    logLevel: "silent",
  });
  copyFileSync(join(ROOT, "web/index.html"), join(out, "index.html"));
  copyFileSync(join(GOLDEN_DIR, "model.safetensors"), join(out, "model.safetensors"));
  server = createServer((req, res) => {
    const file = join(out, decodeURIComponent(new URL(req.url ?? "/", "http://localhost").pathname));
    if (!file.startsWith(out) || !existsSync(file) || statSync(file).isDirectory()) {
      res.writeHead(404).end();
      return;
    }
    const type = file.endsWith(".html") ? "text/html" : file.endsWith(".js") ? "text/javascript" : "application/octet-stream";
    res.writeHead(200, { "content-type": type });
    createReadStream(file).pipe(res);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 120_000);

afterAll(() => server?.close());

describe("the browser demo", () => {
  it("generates the golden greedy ids in headless Chromium and shows per-kernel timings", async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the test command installs Debian's chromium (see README)`);
    const golden = readAllSafetensors(GOLDEN_FILE);
    const ids = golden["input_ids"]!;
    const prompt = [0, 1].map((b) => Array.from(ids.data.subarray(b * 12, b * 12 + 12)).join(",")).join(";");
    const want = [0, 1].map((b) => Array.from(golden["greedy_ids"]!.data.subarray(b * 18 + 12, b * 18 + 18)).join(" ")).join("\n");
    const profileDir = join(out, "chromium-profile");
    mkdirSync(profileDir, { recursive: true });
    const ctx = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--enable-unsafe-webgpu"],
    });
    try {
      const page = await ctx.newPage();
      await page.goto(`${base}/index.html?prompt=${prompt}&steps=6`);
      await page.waitForFunction(() => {
        const s = document.getElementById("status")?.textContent ?? "";
        return s === "done" || s.startsWith("error");
      }, null, { timeout: 180_000 });
      expect(await page.textContent("#status")).toBe("done");
      expect(await page.textContent("#ids")).toBe(want);
      // The prompts' logits against upstream's (the golden ones): as close as under Node.
      const got = (await page.evaluate(() => window.lingcLogits))!;
      const ref = golden["logits"]!;
      expect(got.shape).toEqual([...ref.shape]);
      let worst = 0;
      got.data.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - ref.data[i]!))));
      expect(worst, `browser logits vs golden: max abs error ${worst}`).toBeLessThan(1e-4);
      const rows = await page.$$eval("#timings tbody tr", (trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent)));
      expect(rows.length).toBeGreaterThan(10);
      expect(rows.some((r) => r[0] === "moe_layer.router")).toBe(true);
      for (const r of rows) expect(Number(r[2])).toBeGreaterThanOrEqual(0);
      // Timed on the GPU (SwiftShader has timestamp queries), by kind: the bars add up to the kernels.
      expect(await page.textContent("#clock")).toBe("GPU timestamps");
      const kinds = await page.$$eval("#chart .row", (rs) => rs.map((r) => [r.getAttribute("data-kind"), parseFloat(r.querySelector(".ms")!.textContent!)] as [string, number]));
      expect(kinds.map(([k]) => k)).toEqual(expect.arrayContaining(["router", "attention", "linear"]));
      const sum = kinds.reduce((a, [, ms]) => a + ms, 0);
      const total = rows.reduce((a, r) => a + Number(r[2]), 0);
      expect(Math.abs(sum - total)).toBeLessThan(0.01 * kinds.length + 1e-3);
      // Tokens/s for prefill and decode.
      for (const id of ["#prefill-speed", "#decode-speed"]) expect(Number(await page.textContent(id))).toBeGreaterThan(0);
      expect(kinds.map(([k]) => k).every((k) => /^[a-z_]+$/.test(k!))).toBe(true);
      if (process.env["LINGC_SCREENSHOTS"]) {
        // The README's picture of the demo: this page, as the test left it.
        await page.setViewportSize({ width: 1280, height: 900 });
        await page.screenshot({ path: join(ROOT, "docs/demo.png") });
      }
      // A second prompt typed into the box, generated by the button: streamed into the output.
      await page.fill("#prompt", prompt.split(";")[1]!);
      await page.fill("#steps", "3");
      await page.click("#go");
      await page.waitForFunction(() => document.getElementById("status")?.textContent === "done" && !(document.getElementById("go") as HTMLButtonElement).disabled, null, { timeout: 120_000 });
      expect(await page.textContent("#ids")).toBe(want.split("\n")[1]!.split(" ").slice(0, 3).join(" "));

    } finally {
      await ctx.close();
    }
  }, 240_000);
});

describe("the esbuild plugin", () => {
  it("reports compile errors as esbuild errors at the import", async () => {
    const dir = scratchDir("lingc-plugin-");
    writeFileSync(join(dir, "app.ts"), `// an app\nimport model from "lingc:ling-huge";\nconsole.log(model);\n`);
    writeFileSync(join(dir, "config.json"), JSON.stringify({ model_type: "bailing_moe", vocab_size: 10 }));
    writeFileSync(join(dir, "app2.ts"), `import m from "./config.json?lingc";\nconsole.log(m);\n`);
    const r1 = await build({ entryPoints: [join(dir, "app.ts")], bundle: true, write: false, plugins: [lingcPlugin()], logLevel: "silent" }).catch((e: { errors: { text: string; location: { line: number; column: number } | null }[] }) => e);
    expect("errors" in r1 && r1.errors[0]!.text).toMatch(/lingc: unknown built-in model 'ling-huge'/);
    expect("errors" in r1 && r1.errors[0]!.location).toMatchObject({ line: 2, column: 19 });
    const r2 = await build({ entryPoints: [join(dir, "app2.ts")], bundle: true, write: false, plugins: [lingcPlugin()], logLevel: "silent" }).catch((e: { errors: { text: string; location: { line: number } | null }[] }) => e);
    expect("errors" in r2 && r2.errors[0]!.text).toMatch(/config\.json: config key "hidden_size" is missing/);
    expect("errors" in r2 && r2.errors[0]!.location).toMatchObject({ line: 1 });
  });

  it("puts compiled kernels in the bundle", async () => {
    const dir = scratchDir("lingc-plugin-ok-");
    writeFileSync(join(dir, "app.ts"), `import model from "lingc:ling-tiny";\nexport const n = model.artifacts.forward.kernels.length;\n`);
    const r = await build({ entryPoints: [join(dir, "app.ts")], bundle: true, write: false, format: "esm", plugins: [lingcPlugin()], logLevel: "silent" });
    const js = r.outputFiles[0]!.text;
    expect(js).toContain("@compute @workgroup_size(");
    expect(js).toContain("lingc-wgsl-1");
  });
});
