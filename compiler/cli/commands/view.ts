/**
 * `lingc view <model> --out DIR`: writes a static site to look at a compiled module: its functions
 * as a hierarchy, each as a graph with the plan's kernel groups as boxes, op details with the model
 * source line, FLOPs and bytes from the op table, weights, search, and the module after each pass of
 * the pipeline with what the pass changed. `--serve` serves the folder on 127.0.0.1.
 */
import { existsSync, readFileSync, realpathSync, statSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, extname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { LingcError } from "../../../ir/errors";
import { GRAPHS } from "../../../models/ling2";
import { compileProgram } from "../../driver/compile";
import { hasGraph, openSource } from "../../driver/source";
import { TARGETS, type Target } from "../../driver/targets";
import { TimelineRecorder, sourceLines } from "../../view/snapshot";
import { siteFiles, viewAssets } from "../../view/site";
import type { ViewData } from "../../view/data";
import { flag, int, parseDims, str, UsageError, type OptionSpec } from "../args";
import { writeFileAtomic, type CliIO } from "../io";
import type { Command } from "./command";
import { DTYPE_OPTION, PIPELINE_OPTIONS, passesOption, sourceOptions, targetSettings } from "./backend-options";

/** The sizes costs are shown for unless --dims says otherwise. */
const DEFAULT_DIMS: [string, number][] = [
  ["B", 1],
  ["S", 2048],
  ["P", 2048],
];

/** The folder holding package.json above this file (the repository or the installed package). */
function packageRoot(): string | undefined {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(d, "package.json"))) return d;
    d = dirname(d);
  }
  return undefined;
}

/** Source locations name model code; an IR text could name any file, so only these are read. */
const SOURCE_FILE = /\.(ts|mts|cts|js|mjs|cjs)$/;

/** A model source file's text: the path as recorded (relative to the project root, or absolute). */
function readSource(file: string): string | undefined {
  if (!SOURCE_FILE.test(file)) return undefined;
  const root = packageRoot();
  for (const p of [resolve(file), root ? join(root, file) : undefined]) {
    try {
      if (p && statSync(p).isFile()) return readFileSync(p, "utf8");
    } catch {
      // not there: try the next place
    }
  }
  return undefined;
}

const TYPES: Record<string, string> = { ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".json": "application/json" };

async function serve(dir: string, port: number, io: CliIO): Promise<number> {
  const root = realpathSync(dir);
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? "/", "http://127.0.0.1").pathname);
    const file = resolve(root, `.${path === "/" ? "/index.html" : path}`);
    if (!file.startsWith(root + sep) || !existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { "content-type": "text/plain" }).end("not found\n");
      return;
    }
    res.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" });
    res.end(readFileSync(file));
  });
  await new Promise<void>((ok, fail) => {
    server.once("error", (e: NodeJS.ErrnoException) => fail(new LingcError(`--serve: cannot listen on 127.0.0.1:${port}: ${e.code ?? e.message}`)));
    server.listen(port, "127.0.0.1", () => ok());
  });
  io.err(`serving ${dir} at http://127.0.0.1:${(server.address() as AddressInfo).port}/ (Ctrl-C stops)\n`);
  return new Promise<number>((done) => {
    const stop = () => server.close(() => done(0));
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
  });
}

export const view: Command = {
  spec: {
    name: "view",
    summary: "Writes a static site to explore a compiled module: layer kinds, kernels, stages, op sources, costs, and what each pass changed.",
    positionals: [{ name: "model", help: "a built-in config, a checkpoint folder, a model file (.ts) or an IR text (.lir)" }],
    options: [
      { name: "graph", value: "NAME", help: "which graph of a model (default: forward)", choices: GRAPHS },
      { name: "target", value: "NAME", help: "whose default pipeline to show (default cuda: fusion and the kernel plan)", choices: TARGETS },
      { name: "out", value: "DIR", help: "the folder to write (index.html, app.js, data.js, model-explorer.json)" },
      { name: "serve", help: "then serve the folder on 127.0.0.1 (opens nothing by itself)" },
      { name: "port", value: "N", help: "the port for --serve (default 8765; 0 picks a free one)" },
      { name: "dims", value: "SYM=N,...", help: "the sizes FLOPs and bytes are shown for (default B=1,S=2048,P=2048)" },
      DTYPE_OPTION,
      ...PIPELINE_OPTIONS,
    ] as OptionSpec[],
    notes: [
      "examples: lingc view ling-1t --out out/view-1t && open out/view-1t/index.html",
      "          lingc view ling-tiny --graph decode --passes 'cse,dce,fusion{profile=cuda-sm90a}' --out out/v --serve",
      "The page needs no network: open index.html from disk. model-explorer.json opens in Google's Model Explorer.",
    ],
  },
  async run(args, io) {
    const modelArg = args.positionals[0]!;
    const out = str(args, "out");
    if (out === undefined) throw new UsageError("'lingc view' needs --out DIR (see 'lingc view --help')");
    const target = (str(args, "target") ?? "cuda") as Target;
    const settings = targetSettings(args);
    const passes = passesOption(args);
    const port = int(args, "port", 0) ?? 8765;
    if (port > 65535) throw new UsageError(`--port: ${port} is not a port (0..65535)`);
    const dims = new Map([...DEFAULT_DIMS, ...parseDims(str(args, "dims"))]);
    const source = await openSource(modelArg, undefined, sourceOptions(args));
    const graphArg = str(args, "graph");
    if (graphArg && modelArg.endsWith(".lir")) throw new LingcError("--graph does not apply to an IR file (the module names its graph)");
    const graph = graphArg ?? source.graphs[0]!;
    if (!hasGraph(source, graph)) throw new LingcError(`${source.label} has no graph '${graph}' (it has ${source.graphs.join(", ")})`);
    // The output must not be the model itself (the .lir, or a checkpoint folder: a built-in config's too).
    for (const input of [modelArg, source.weights]) {
      if (input && existsSync(out) && existsSync(input) && realpathSync(out) === realpathSync(input)) throw new LingcError(`--out ${out} is the model's ${input === modelArg ? "own path" : "checkpoint folder"}; write the view somewhere else`);
    }
    // The view's files replace a previous view's, never a page of someone else's.
    const index = join(out, "index.html");
    const ours = existsSync(index) && readFileSync(index, "utf8").includes("<title>lingc view");
    const clash = ["index.html", "data.js", "app.js", "model-explorer.json"].find((name) => existsSync(join(out, name)));
    if (clash && !ours) throw new LingcError(`--out ${out} already holds ${clash} that is not from 'lingc view'; give an empty or new folder`);
    const recorder = new TimelineRecorder(dims);
    const { program, pipeline } = await compileProgram({
      source,
      graphs: [graph],
      target,
      settings,
      passes,
      passRun: {
        observe: (m, stage, ms) => {
          if (stage === undefined) {
            // Costs need a size for every symbol of the entry's inputs.
            const missing = new Set<string>();
            for (const p of m.entry?.params ?? []) for (const d of p.type.shape) for (const s of d.symbols()) if (!dims.has(s)) missing.add(s);
            if (missing.size) throw new LingcError(`the graph's inputs have the symbol(s) ${[...missing].join(", ")}: give their sizes with --dims ${[...missing].map((s) => `${s}=N`).join(",")}`);
          }
          recorder.record(m, stage, ms);
        },
      },
    });
    const data: ViewData = {
      model: source.label,
      graph: program.graphs[0]!.name,
      target,
      pipeline,
      dims: Object.fromEntries(dims),
      entry: program.graphs[0]!.name,
      functions: recorder.functions,
      snapshots: recorder.snapshots,
      sources: sourceLines(recorder.functions, readSource),
    };
    const files = siteFiles(data, await viewAssets());
    for (const [name, text] of Object.entries(files)) writeFileAtomic(join(out, name), text);
    const last = data.snapshots[data.snapshots.length - 1]!;
    io.err(`wrote ${out}/index.html (${graph}: ${last.functions.length} functions, ${data.snapshots.length - 1} passes: ${pipeline || "none"}) and ${out}/model-explorer.json\n`);
    if (flag(args, "serve")) return serve(out, port, io);
    return 0;
  },
};
