/**
 * The folder `lingc view` writes: index.html, app.js (the page, with its graph-layout library
 * bundled in), data.js (the view data as a script, so that the page opens from file:// with no
 * server and no network) and model-explorer.json (the same module for Google's Model Explorer).
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { LingcError } from "../../ir/errors";
import type { ViewData } from "./data";
import { modelExplorerGraphs } from "./model-explorer";

export interface ViewAssets {
  html: string;
  js: string;
}

/**
 * The page's files: built by `npm run build` next to the CLI bundle (dist/view/), or, run from the
 * TypeScript sources (tests), bundled here with esbuild.
 */
export async function viewAssets(): Promise<ViewAssets> {
  const here = dirname(fileURLToPath(import.meta.url));
  const built = join(here, "view");
  if (existsSync(join(built, "app.js"))) return { html: readFileSync(join(built, "index.html"), "utf8"), js: readFileSync(join(built, "app.js"), "utf8") };
  const page = join(here, "page");
  if (existsSync(join(page, "app.ts"))) {
    const { build } = await import("esbuild");
    const r = await build({ entryPoints: [join(page, "app.ts")], bundle: true, format: "iife", platform: "browser", target: "es2022", minify: true, write: false, logLevel: "silent" });
    return { html: readFileSync(join(page, "index.html"), "utf8"), js: r.outputFiles[0]!.text };
  }
  throw new LingcError(`the view page's files are missing (${join(built, "app.js")}): run 'npm run build'`);
}

/** The folder's files by name. */
export function siteFiles(data: ViewData, assets: ViewAssets): Record<string, string> {
  return {
    "index.html": assets.html.replace("<title>lingc view</title>", `<title>lingc view: ${escapeHtml(data.model)} ${escapeHtml(data.graph)}</title>`),
    "app.js": assets.js,
    "data.js": `window.LINGC_VIEW = ${JSON.stringify(data)};\n`,
    "model-explorer.json": JSON.stringify(modelExplorerGraphs(data)) + "\n",
  };
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
}
