/**
 * How fast `lingc view`'s page opens and navigates a large model: writes the view of a model (default
 * ling-1t's forward), opens index.html from disk in headless Chromium (the system's, as the tests use)
 * and measures, over several fresh page loads, the time from navigation start to the first graph
 * drawn, and then to open the MoE layer and select an op in it. Prints the medians (and each run).
 *   npm run bench:view [-- --model ling-1t --runs 5 --screenshot docs/view.png]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { chromium } from "playwright-core";
import "../ir/ops";
import { runCli } from "../compiler/cli/main";

const arg = (name: string, dflt: string) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1]! : dflt;
};
const model = arg("model", "ling-1t");
const runs = Number(arg("runs", "5"));
const shot = arg("screenshot", "");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const dir = mkdtempSync(join(tmpdir(), "lingc-view-bench-"));
const t0 = performance.now();
const code = await runCli(["view", model, "--out", dir], { out: () => {}, err: (t) => process.stderr.write(t) });
if (code !== 0) process.exit(code);
const writeMs = performance.now() - t0;

const ctx = await chromium.launchPersistentContext(join(dir, "profile"), { executablePath: "/usr/bin/chromium", headless: true, viewport: { width: 1600, height: 1000 }, args: ["--no-sandbox", "--disable-gpu", "--no-first-run"] });
const open: number[] = [];
const nav: number[] = [];
try {
  for (let r = 0; r < runs; r++) {
    const page = await ctx.newPage();
    await page.goto(pathToFileURL(join(dir, "index.html")).href);
    await page.waitForFunction(() => window.lingcViewReady !== undefined);
    // Navigation start to the first graph drawn (parse of data.js and the page, layout, SVG).
    open.push(await page.evaluate(() => window.lingcViewReady!));
    const t = await page.evaluate(async () => {
      const s = performance.now();
      (document.querySelector('#tree a[data-func="moe_layer"]') as HTMLElement).click();
      (document.querySelector('#graph g.node.op[data-op]') as unknown as HTMLElement).dispatchEvent(new MouseEvent("click", { bubbles: true }));
      return performance.now() - s;
    });
    nav.push(t);
    if (shot && r === runs - 1) {
      // The router kernel's top-k op selected: its details and model source line in the right pane.
      await page.locator('#graph g.node[data-func="moe_layer.router"]', { hasText: "group_topk" }).dispatchEvent("click");
      await page.screenshot({ path: shot });
    }
    await page.close();
  }
} finally {
  await ctx.close();
  rmSync(dir, { recursive: true, force: true });
}
console.log(`lingc view ${model}: wrote the site in ${writeMs.toFixed(0)} ms`);
console.log(`page opened (navigation start to the first graph drawn), median of ${runs}: ${median(open).toFixed(0)} ms  [${open.map((x) => x.toFixed(0)).join(", ")}]`);
console.log(`open the MoE layer and select an op, median of ${runs}: ${median(nav).toFixed(0)} ms  [${nav.map((x) => x.toFixed(0)).join(", ")}]`);
