/**
 * `lingc view` as a user runs it: the CLI writes the site, headless Chromium (the system's) opens
 * Ling-1T's forward from disk and a user walks it: into a MoE layer, a kernel group, an op and its
 * source line, a search by scope, the pass timeline. Also the CLI's errors and --serve.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cli } from "../support/cli";
import { ROOT, scratchDir } from "../support/paths";

const CHROMIUM = "/usr/bin/chromium";
const dir = scratchDir("lingc-view-");

describe("lingc view: the page in headless Chromium", () => {
  let ctx: Awaited<ReturnType<typeof chromium.launchPersistentContext>>;
  let page: Page;
  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: the test command installs Debian's chromium (see README)`);
    const r = await cli("view", "ling-1t", "--out", join(dir, "v1t"));
    expect(r.code, r.stderr).toBe(0);
    mkdirSync(join(dir, "profile"), { recursive: true });
    ctx = await chromium.launchPersistentContext(join(dir, "profile"), { executablePath: CHROMIUM, headless: true, viewport: { width: 1500, height: 950 }, args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"] });
    page = await ctx.newPage();
    const errors: string[] = [];
    page.on("pageerror", (e) => errors.push(e.message));
    // No network: the page is opened from disk and every request must be a file.
    page.on("request", (req) => {
      if (!req.url().startsWith("file://")) errors.push(`network request ${req.url()}`);
    });
    await page.goto(pathToFileURL(join(dir, "v1t", "index.html")).href);
    await page.waitForFunction(() => window.lingcViewReady !== undefined, null, { timeout: 30_000 });
    expect(errors).toEqual([]);
  }, 120_000);
  afterAll(async () => ctx?.close());

  it("shows the entry with its layer kinds, goes into a MoE layer, a kernel group and an op with its source line", async () => {
    expect(await page.textContent("#title")).toBe("ling-1t: forward (cuda)");
    const tree = await page.$$eval("#tree a.fn", (as) => as.map((a) => a.getAttribute("data-func")! + "|" + a.textContent));
    expect(tree.some((t) => t.startsWith("moe_layer|moe_layer x76"))).toBe(true);
    expect(tree.some((t) => t.startsWith("dense_layer|dense_layer x4"))).toBe(true);
    // The entry's 80 layer calls are nodes of its graph.
    expect(await page.$$eval("#graph g.node.call", (gs) => gs.filter((g) => g.querySelector("text.title")!.textContent === "call @moe_layer").length)).toBe(76);

    await page.click('#tree a.fn[data-func="moe_layer"]');
    expect(await page.textContent("#crumbs")).toBe("@forward@moe_layer");
    const kernels = await page.$$eval("#graph g.kernel", (gs) => gs.map((g) => g.getAttribute("data-kernel")));
    expect(kernels).toEqual(expect.arrayContaining(["moe_layer.router", "moe_layer.swiglu", "moe_layer.attention", "moe_layer.qk_norm_rope"]));

    // The router's kernel group: its details, then an op inside it (clicked where they are, which
    // may be below the fold of the graph pane: a click event, as a user's after panning).
    await page.locator('#graph g.kernel[data-kernel="moe_layer.router"] > rect').dispatchEvent("click");
    expect(await page.textContent("#details-title")).toBe("kernel @moe_layer.router");
    await page.locator('#graph g.node[data-func="moe_layer.router"]', { hasText: "group_topk" }).dispatchEvent("click");
    expect(await page.textContent("#details-title")).toBe("group_topk");
    const loc = (await page.textContent("#op-source"))!;
    const m = /^(models\/ling2\.ts):(\d+):(\d+)$/.exec(loc);
    expect(m, loc).not.toBeNull();
    const line = readFileSync(join(ROOT, m![1]!), "utf8").split("\n")[Number(m![2]) - 1]!.trim();
    expect(await page.textContent("#source-text")).toBe(line);
    expect(line).toMatch(/topk/i);
    const details = (await page.textContent("#details"))!;
    expect(details).toContain("i32[B*S, 8]");
    expect(details).toMatch(/FLOPs.*FLOP/);

    // A call's details open the callee; the breadcrumbs go back up.
    await page.click("#crumbs a[data-func=forward]");
    expect(await page.textContent("#crumbs")).toBe("@forward");
  });

  it("searches a scope and jumps to the op", async () => {
    await page.fill("#search", "model.layers.17");
    const hits = await page.$$eval("#search-results li", (lis) => lis.map((li) => li.textContent!));
    expect(hits.length).toBe(1);
    expect(hits[0]).toContain("call @moe_layer [model.layers.17]");
    await page.click("#search-results li");
    expect(await page.textContent("#details-title")).toBe("call @moe_layer");
    expect(await page.textContent("#details")).toContain("model.layers.17");
    await page.fill("#search", "");
  });

  it("steps through the pass timeline, showing what each pass changed", async () => {
    const passes = await page.$$eval("#timeline button.pass", (bs) => bs.map((b) => b.textContent));
    expect(passes).toEqual(["input", "castlinear", "cse", "dce", "fusion{..}", "select{..}"]);
    await page.click("#prev-pass");
    await page.click("#prev-pass");
    expect(await page.textContent("#pass-name")).toBe("3/5 dce");
    await page.click("#next-pass");
    expect(await page.textContent("#pass-name")).toBe("4/5 fusion{profile=cuda-sm90a}");
    expect(await page.textContent("#pass-summary")).toMatch(/^\d+ function\(s\) added, \d+ changed, 0 removed$/);
    // Kernels are new in this pass, and the MoE layer's new ops are marked.
    expect(await page.$$eval("#tree a.fn.added", (as) => as.map((a) => a.getAttribute("data-func")))).toEqual(expect.arrayContaining(["moe_layer.router", "moe_layer.swiglu"]));
    await page.click('#tree a.fn[data-func="moe_layer"]');
    expect(await page.$$eval("#graph g.kernel.changed", (gs) => gs.length)).toBeGreaterThanOrEqual(4);
    // Before fusion the layer has no kernel boxes.
    await page.click('#timeline button.pass[data-index="0"]');
    expect(await page.textContent("#pass-name")).toBe("0/5 input");
    expect(await page.$$eval("#graph g.kernel", (gs) => gs.length)).toBe(0);
    expect(await page.textContent("#crumbs")).toContain("@moe_layer");
  });
});

describe("lingc view: the command", () => {
  it("writes the four files for a graph and a pipeline given, and refuses bad arguments clearly", async () => {
    const out = join(dir, "tiny-decode");
    const r = await cli("view", "ling-tiny", "--graph", "decode", "--passes", "cse,dce", "--out", out);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain("(decode: 3 functions, 2 passes: cse,dce)");
    const data = readFileSync(join(out, "data.js"), "utf8");
    expect(data.startsWith("window.LINGC_VIEW = {")).toBe(true);
    const me = JSON.parse(readFileSync(join(out, "model-explorer.json"), "utf8"));
    expect(me.graphs[0].id).toBe("decode (expanded)");
    expect(readFileSync(join(out, "index.html"), "utf8")).toContain("<title>lingc view: ling-tiny decode</title>");

    const bad = [
      [["view", "ling-tiny"], 2, "'lingc view' needs --out DIR"],
      [["view", "ling-tiny", "--out", out, "--graph", "nope"], 2, "--graph"],
      [["view", "ling-tiny", "--out", out, "--dims", "B=0"], 2, "--dims: 'B=0' is not SYMBOL=N"],
      [["view", "ling-tiny", "--out", out, "--passes", "frob"], 2, "--passes"],
      [["view", "no-such-model", "--out", out], 1, "no-such-model"],
    ] as const;
    for (const [argv, code, msg] of bad) {
      const b = await cli(...argv);
      expect(b.code, `${argv.join(" ")}: ${b.stderr}`).toBe(code);
      expect(b.stderr).toContain(msg);
      expect(b.stderr).not.toContain("    at ");
    }
    // A folder holding a page of someone else's is left alone; a previous view is replaced.
    const theirs = join(dir, "theirs");
    mkdirSync(theirs);
    writeFileSync(join(theirs, "index.html"), "<html>my page</html>");
    const t = await cli("view", "ling-tiny", "--out", theirs);
    expect(t.code).toBe(1);
    expect(t.stderr).toContain("already holds index.html that is not from 'lingc view'");
    expect(readFileSync(join(theirs, "index.html"), "utf8")).toBe("<html>my page</html>");
    expect((await cli("view", "ling-tiny", "--out", out)).code).toBe(0);
    // An IR text names its graph; its symbols need sizes.
    const lir = join(dir, "toy.lir");
    writeFileSync(lir, 'module @toy {\n  func @toy(%x: f32[N, 4]) -> (y: f32[N, 4]) {\n    %0 = exp(%x) : f32[N, 4]\n    return %0\n  }\n}\n');
    const g = await cli("view", lir, "--graph", "decode", "--out", join(dir, "toy"));
    expect(g.code).toBe(1);
    expect(g.stderr).toContain("--graph does not apply to an IR file");
    const n = await cli("view", lir, "--out", join(dir, "toy"));
    expect(n.code).toBe(1);
    expect(n.stderr).toContain("give their sizes with --dims N=N");
    expect((await cli("view", lir, "--out", join(dir, "toy"), "--dims", "N=3")).code).toBe(0);
  }, 60_000);

  it("--serve serves the folder on 127.0.0.1", async () => {
    const out = join(dir, "served");
    const child = spawn(process.execPath, [join(ROOT, "bin/lingc.mjs"), "view", "ling-tiny", "--out", out, "--serve", "--port", "0"], { cwd: ROOT });
    try {
      const url = await new Promise<string>((ok, fail) => {
        let err = "";
        child.stderr.on("data", (b) => {
          err += String(b);
          const m = /serving .* at (http:\/\/127\.0\.0\.1:\d+\/)/.exec(err);
          if (m) ok(m[1]!);
        });
        child.on("exit", (c) => fail(new Error(`exited ${c}: ${err}`)));
      });
      const html = await (await fetch(url)).text();
      expect(html).toContain('<script src="data.js"></script>');
      expect((await fetch(`${url}data.js`)).status).toBe(200);
      expect((await fetch(`${url}../../etc/passwd`)).status).toBe(404);
    } finally {
      child.kill("SIGTERM");
    }
  }, 60_000);
});
