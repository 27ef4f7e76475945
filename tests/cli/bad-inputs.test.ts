/**
 * Bad input as a user gives it, one table (issue 17's acceptance): each case runs one command and
 * must exit with its code (1 bad input, 2 usage), print one `lingc: error:` line whose first words are
 * the case's, and leave every file of the fixture as it was: inputs, checkpoints and a pre-existing
 * output byte for byte, devices still devices, no file added (no partial output, no temp file).
 * Device-node cases use character devices made for the test (mknod: root, as CI runs).
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, cpSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { readAllSafetensors, writeSafetensors } from "../../backends/weights/safetensors";
import { Tensor } from "../../ir/tensor";
import { cli } from "../support/cli";
import { GOLDEN_DIR, GOLDEN_FILE, ROOT, scratchDir } from "../support/paths";

const root = process.getuid?.() === 0;
const dir = scratchDir("lingc-bad-inputs-");
const P = (...parts: string[]) => join(dir, ...parts);

/** Every entry under the fixture: its kind and, for a file, its bytes' hash. */
function snapshot(): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) {
        out.set(p, "dir");
        walk(p);
      } else if (st.isFile()) out.set(p, createHash("sha256").update(readFileSync(p)).digest("hex"));
      else out.set(p, st.isCharacterDevice() ? "chardev" : st.isFIFO() ? "fifo" : "other");
    }
  };
  walk(dir);
  return out;
}

/** A copy of the golden checkpoint, changed by `edit` (tensors by name, and the config). */
function checkpoint(name: string, edit: (t: Record<string, Tensor>, cfg: Record<string, unknown>) => void): string {
  const d = P(name);
  mkdirSync(d, { recursive: true });
  const t = readAllSafetensors(join(GOLDEN_DIR, "model.safetensors"));
  const cfg = JSON.parse(readFileSync(join(GOLDEN_DIR, "config.json"), "utf8")) as Record<string, unknown>;
  edit(t, cfg);
  writeSafetensors(join(d, "model.safetensors"), t);
  writeFileSync(join(d, "config.json"), JSON.stringify(cfg, null, 1));
  return d;
}

/** An input file holding these tensors. */
function inputFile(name: string, tensors: Record<string, Tensor>): string {
  writeSafetensors(P(name), tensors);
  return P(name);
}

interface Case {
  name: string;
  argv: () => string[];
  code: 1 | 2;
  /** The message's first words (after `lingc: error: `). */
  starts: RegExp;
  needsRoot?: boolean;
}

const CK = () => P("ck");
const IN = () => P("input.safetensors");
const OUT = () => P("existing-out.safetensors");
const run = (...rest: string[]) => ["run", CK(), "--input", IN(), ...rest];
const ids = (values: number[], shape = [1, values.length]) => ({ input_ids: Tensor.from("i64", shape, values) });

const CASES: Case[] = [
  // Output discipline: never replace a device, FIFO, folder or an input; check every write.
  { name: "--out a full character device", argv: () => run("--out", P("full")), code: 1, starts: /^cannot write .*full: ENOSPC/, needsRoot: true },
  { name: "--out a FIFO", argv: () => run("--out", P("fifo")), code: 1, starts: /^cannot write .*fifo: it is not a regular file/ },
  { name: "--out a folder", argv: () => run("--out", P("outdir")), code: 1, starts: /^cannot write .*outdir: it is a folder/ },
  { name: "--out the checkpoint folder", argv: () => run("--out", CK()), code: 1, starts: /^--out .*ck is an input of this command/ },
  { name: "--out the checkpoint's weights", argv: () => run("--out", P("ck", "model.safetensors")), code: 1, starts: /^--out .*model\.safetensors is an input of this command/ },
  { name: "--out the checkpoint's config", argv: () => run("--out", P("ck", "config.json")), code: 1, starts: /^--out .*config\.json is an input of this command/ },
  { name: "--out the --input file", argv: () => run("--out", IN()), code: 1, starts: /^--out .*input\.safetensors is an input of this command/ },
  { name: "--out in /proc", argv: () => run("--out", "/proc/lingc-test-out"), code: 1, starts: /^cannot write \/proc\/lingc-test-out/ },
  { name: "--out in a folder that is a file", argv: () => run("--out", P("input.safetensors", "x.safetensors")), code: 1, starts: /^cannot (write|create)/ },
  { name: "a failing run keeps a pre-existing output", argv: () => ["run", P("ck-nan"), "--input", IN(), "--out", OUT()], code: 1, starts: /^.*ck-nan: weight ".*" holds NaN/ },
  { name: "compile --out a file", argv: () => ["compile", "ling-tiny", "--target", "ir", "--out", OUT()], code: 1, starts: /^cannot (write|create)/ },
  // Bind what you check: the checkpoint against the model its config describes.
  { name: "a transposed tensor of the same size", argv: () => ["run", P("ck-transposed"), "--input", IN(), "--out", P("new.safetensors")], code: 1, starts: /^.*ck-transposed\/model\.safetensors: tensor ".*query_key_value\.weight" has shape \[64, 128\], the model expects \[128, 64\]/ },
  { name: "onnx-bind of a transposed tensor of the same size", argv: () => ["onnx-bind", P("tiny.onnx"), P("ck-transposed"), "--out", P("new.onnx")], code: 1, starts: /^.*ck-transposed\/model\.safetensors: tensor ".*query_key_value\.weight" \(F32 \[64, 128\]\) does not match .*f32 \[128, 64\]/ },
  { name: "a tensor of another dtype", argv: () => ["run", P("ck-f16"), "--input", IN(), "--out", P("new.safetensors")], code: 1, starts: /^.*ck-f16\/model\.safetensors: tensor ".*" has dtype F16 \(f16\), the model expects F32 \(f32\)/ },
  { name: "a missing tensor", argv: () => ["run", P("ck-missing"), "--input", IN(), "--out", P("new.safetensors")], code: 1, starts: /^.*ck-missing: tensor "model\.norm\.weight" is missing/ },
  { name: "a tensor no graph reads (config says no QK norm)", argv: () => ["run", P("ck-noqk"), "--input", IN(), "--out", P("new.safetensors")], code: 1, starts: /^.*ck-noqk: tensors ".*layernorm\.weight".* and 5 more are not weights of the model/ },
  { name: "onnx-bind to a checkpoint of another config", argv: () => ["onnx-bind", P("tiny.onnx"), P("ck-scaling"), "--out", P("new.onnx")], code: 1, starts: /^.*ck-scaling\/config\.json: routed_scaling_factor is 1\.5, but .*tiny\.onnx was compiled for 2\.5/ },
  { name: "an IR text run with weights of another config", argv: () => ["run", P("tiny.lir"), "--weights", P("ck-scaling"), "--input", IN(), "--out", P("new.safetensors")], code: 1, starts: /^.*ck-scaling\/config\.json: routed_scaling_factor is 1\.5, but .*tiny\.lir was compiled for 2\.5/ },
  { name: "a NaN weight", argv: () => ["run", P("ck-nan"), "--input", IN(), "--out", P("new.safetensors")], code: 1, starts: /^.*ck-nan: weight ".*" holds NaN at \[/ },
  { name: "a NaN weight on ONNX Runtime (which reads the files itself)", argv: () => ["run", P("ck-nan"), "--backend", "onnx", "--input", IN(), "--out", P("new.safetensors")], code: 1, starts: /^.*ck-nan: weight ".*" holds NaN at \[/ },
  { name: "an infinite weight", argv: () => ["run", P("ck-inf"), "--input", IN(), "--out", P("new.safetensors")], code: 1, starts: /^.*ck-inf: weight ".*" holds -?Infinity at \[/ },
  { name: "rope_theta 0", argv: () => ["run", P("ck-theta"), "--input", IN(), "--out", P("new.safetensors")], code: 1, starts: /^.*ck-theta\/config\.json:\d+:\d+: config key "rope_theta" must be a number above 1, got 0/ },
  { name: "rms_norm_eps -1", argv: () => ["run", P("ck-eps"), "--input", IN(), "--out", P("new.safetensors")], code: 1, starts: /^.*ck-eps\/config\.json:\d+:\d+: config key "rms_norm_eps" must be a positive number, got -1/ },
  { name: "a million layers", argv: () => ["info", P("ck-layers")], code: 1, starts: /^.*ck-layers\/config\.json:\d+:\d+: config key "num_hidden_layers" \(1000000\) is past what lingc accepts/ },
  { name: "config.json that is not JSON", argv: () => ["run", P("ck-json"), "--input", IN(), "--out", P("new.safetensors")], code: 1, starts: /^.*ck-json\/config\.json/ },
  { name: "a truncated weights file", argv: () => ["run", P("ck-cut"), "--input", IN(), "--out", P("new.safetensors")], code: 1, starts: /^.*ck-cut\/model\.safetensors/ },
  { name: "an absurd header length", argv: () => ["run", P("ck-header"), "--input", IN(), "--out", P("new.safetensors")], code: 1, starts: /^.*ck-header\/model\.safetensors: header length/ },
  { name: "an index naming a missing shard", argv: () => ["run", P("ck-index"), "--input", IN(), "--out", P("new.safetensors")], code: 1, starts: /^cannot open .*ck-index\/missing\.safetensors: ENOENT/ },
  { name: "a folder without weights", argv: () => ["run", P("ck-empty"), "--input", IN(), "--out", P("new.safetensors")], code: 1, starts: /^.*ck-empty: no weights found/ },
  // Numbers that cannot be trusted, and bounds: refused before any work.
  { name: "a token id of -1", argv: () => ["run", CK(), "--input", P("ids-neg.safetensors"), "--out", P("new.safetensors")], code: 1, starts: /^.*ids-neg\.safetensors: tensor "input_ids" holds -1 at \[0, 2\]/ },
  { name: "a token id past the vocabulary", argv: () => ["run", CK(), "--input", P("ids-big.safetensors"), "--out", P("new.safetensors")], code: 1, starts: /^.*ids-big\.safetensors: tensor "input_ids" holds 512 at \[0, 1\]/ },
  { name: "input_ids of another rank", argv: () => ["run", CK(), "--input", P("ids-rank.safetensors"), "--out", P("new.safetensors")], code: 1, starts: /^.*ids-rank\.safetensors: tensor "input_ids" has shape \[4\]/ },
  { name: "input_ids as floats", argv: () => ["run", CK(), "--input", P("ids-f32.safetensors"), "--out", P("new.safetensors")], code: 1, starts: /^.*ids-f32\.safetensors: tensor "input_ids" has dtype f32/ },
  { name: "an empty sequence", argv: () => ["run", CK(), "--input", P("ids-empty.safetensors"), "--out", P("new.safetensors")], code: 1, starts: /^.*ids-empty\.safetensors: tensor "input_ids" has shape \[1, 0\]: every axis must be at least 1/ },
  { name: "an input file without input_ids", argv: () => ["run", CK(), "--input", P("no-ids.safetensors"), "--out", P("new.safetensors")], code: 1, starts: /^.*no-ids\.safetensors: no tensor "input_ids"/ },
  { name: "an input file that is not safetensors", argv: () => ["run", CK(), "--input", P("ck", "config.json"), "--out", P("new.safetensors")], code: 1, starts: /^.*ck\/config\.json/ },
  { name: "--observe matching nothing", argv: () => run("--out", P("new.safetensors"), "--observe", "no.such.*"), code: 1, starts: /^--observe 'no\.such\.\*' matched no value of graph forward/ },
  { name: "--observe on wgsl, where the values are fused away", argv: () => run("--out", P("new.safetensors"), "--backend", "wgsl", "--observe", "hidden.*"), code: 1, starts: /^--observe 'hidden\.\*' matched no value of graph forward that the wgsl backend exposes/ },
  { name: "a prompt past max_position_embeddings", argv: () => ["generate", CK(), "--prompt", "1,2,3", "--max-new-tokens", "2046"], code: 1, starts: /^a prompt of 3 tokens plus --max-new-tokens 2046 is 2049 positions, past the model's max_position_embeddings 2048/ },
  { name: "a prompt id past the vocabulary", argv: () => ["generate", CK(), "--prompt", "1,512", "--max-new-tokens", "2"], code: 1, starts: /^prompt 1, token 2: id 512 is not in the vocabulary \(0\.\.511\)/ },
  // Usage errors (exit 2): what was typed is wrong, not what it points at.
  { name: "an unknown command", argv: () => ["frobnicate"], code: 2, starts: /^unknown command 'frobnicate'/ },
  { name: "an unknown option", argv: () => run("--out", P("new.safetensors"), "--frob"), code: 2, starts: /^unknown option '--frob' for 'run'/ },
  { name: "an unknown backend", argv: () => run("--out", P("new.safetensors"), "--backend", "tpu"), code: 2, starts: /^option '--backend' must be one of interp, onnx, wgsl, cuda, got 'tpu'/ },
  { name: "an unknown pass", argv: () => run("--out", P("new.safetensors"), "--passes", "cse,frob"), code: 2, starts: /^--passes: unknown pass 'frob'/ },
  { name: "a tolerance that is not a number", argv: () => ["compare", CK(), "--backends", "interp,onnx", "--input", IN(), "--tolerance", "abc"], code: 2, starts: /^--tolerance must be a non-negative number, got 'abc'/ },
  { name: "one backend to compare", argv: () => ["compare", CK(), "--backends", "interp", "--input", IN()], code: 2, starts: /^--backends needs two backends/ },
  { name: "--max-new-tokens that is not a number", argv: () => ["generate", CK(), "--prompt", "1,2", "--max-new-tokens", "many"], code: 2, starts: /^option '--max-new-tokens' must be an integer >= 0, got 'many'/ },
  { name: "--stages 0", argv: () => run("--out", P("new.safetensors"), "--stages", "0"), code: 2, starts: /^option '--stages' must be an integer >= 1, got '0'/ },
  { name: "an unknown --dtype", argv: () => run("--out", P("new.safetensors"), "--dtype", "f64"), code: 2, starts: /^option '--dtype' must be one of f32, bf16, f16, got 'f64'/ },
  { name: "run without --out", argv: () => ["run", CK(), "--input", IN()], code: 2, starts: /^'lingc run' needs --out|--out/ },
  { name: "plan without --stages", argv: () => ["plan", "ling-tiny"], code: 2, starts: /^.*--stages/ },
  // Other files given as models.
  { name: "an IR text with a syntax error", argv: () => ["opt", P("broken.lir")], code: 1, starts: /^.*broken\.lir:2:\d+:/ },
  { name: "view into a folder holding a page of someone else's", argv: () => ["view", "ling-tiny", "--out", P("site")], code: 1, starts: /^--out .*site already holds index\.html that is not from 'lingc view'/ },
  { name: "view with the model's checkpoint folder as --out", argv: () => ["view", CK(), "--out", CK()], code: 1, starts: /^--out .*ck is the model's own path/ },
  { name: "view --port past 65535", argv: () => ["view", "ling-tiny", "--out", P("new-site"), "--port", "70000"], code: 2, starts: /^--port: 70000 is not a port/ },
  { name: "quantize into the checkpoint itself", argv: () => ["quantize", CK(), "--out", CK()], code: 1, starts: /^.*ck already exists; give a new folder for the quantized checkpoint/ },
  { name: "quantize of a .safetensors file, not a folder", argv: () => ["quantize", P("ck", "model.safetensors"), "--out", P("new-q")], code: 1, starts: /^.*ck\/model\.safetensors: not a checkpoint folder/ },
  { name: "quantize with an unknown recipe", argv: () => ["quantize", CK(), "--out", P("new-q"), "--recipe", "frob"], code: 2, starts: /^option '--recipe' must be one of transformers, ling, got 'frob'/ },
  { name: "plan with a memory limit that is not a number", argv: () => ["plan", "ling-tiny", "--stages", "2", "--memory-limit", "abc"], code: 2, starts: /^--memory-limit abc is not a positive number of GB/ },
  { name: "onnx-bind on a file that is not ONNX", argv: () => ["onnx-bind", P("ck", "config.json"), CK(), "--out", P("new.onnx")], code: 1, starts: /^.*ck\/config\.json is not an ONNX model/ },
];

beforeAll(() => {
  cpSync(GOLDEN_DIR, CK(), { recursive: true, filter: (src) => !src.endsWith("golden.safetensors") && !src.endsWith("README.md") });
  copyFileSync(GOLDEN_FILE, IN());
  writeFileSync(OUT(), "a file that was here before\n");
  execFileSync("mkfifo", [P("fifo")]);
  mkdirSync(P("outdir"));
  mkdirSync(P("site"));
  writeFileSync(P("site", "index.html"), "<html>my page</html>\n");
  if (root) execFileSync("mknod", [P("full"), "c", "1", "7"]);
  checkpoint("ck-nan", (t) => (t["model.norm.weight"]!.data[3] = NaN));
  checkpoint("ck-inf", (t) => (t["lm_head.weight"]!.data[7] = -Infinity));
  checkpoint("ck-transposed", (t) => {
    const w = t["model.layers.1.attention.query_key_value.weight"]!;
    t["model.layers.1.attention.query_key_value.weight"] = new Tensor(w.dtype, [w.shape[1]!, w.shape[0]!], w.data);
  });
  checkpoint("ck-f16", (t) => {
    const w = t["model.norm.weight"]!;
    t["model.norm.weight"] = new Tensor("f16", w.shape, Float32Array.from(w.data));
  });
  checkpoint("ck-missing", (t) => delete t["model.norm.weight"]);
  checkpoint("ck-noqk", (_t, cfg) => (cfg["use_qk_norm"] = false));
  checkpoint("ck-theta", (_t, cfg) => (cfg["rope_theta"] = 0));
  checkpoint("ck-scaling", (_t, cfg) => (cfg["routed_scaling_factor"] = 1.5));
  checkpoint("ck-eps", (_t, cfg) => (cfg["rms_norm_eps"] = -1));
  checkpoint("ck-layers", (_t, cfg) => (cfg["num_hidden_layers"] = 1000000));
  writeFileSync(join(checkpoint("ck-json", () => undefined), "config.json"), '{"vocab_size": 512,');
  const cut = checkpoint("ck-cut", () => undefined);
  const bytes = readFileSync(join(cut, "model.safetensors"));
  writeFileSync(join(cut, "model.safetensors"), bytes.subarray(0, bytes.length - 1000));
  const header = checkpoint("ck-header", () => undefined);
  const hb = Buffer.from(readFileSync(join(header, "model.safetensors")));
  hb.writeBigUInt64LE(5789751444030890300n, 0);
  writeFileSync(join(header, "model.safetensors"), hb);
  const index = checkpoint("ck-index", () => undefined);
  const names = Object.keys(readAllSafetensors(join(index, "model.safetensors")));
  writeFileSync(join(index, "model.safetensors.index.json"), JSON.stringify({ weight_map: Object.fromEntries(names.map((n, i) => [n, i ? "model.safetensors" : "missing.safetensors"])) }));
  mkdirSync(P("ck-empty"));
  copyFileSync(join(GOLDEN_DIR, "config.json"), P("ck-empty", "config.json"));
  inputFile("ids-neg.safetensors", ids([3, 4, -1, 5]));
  inputFile("ids-big.safetensors", ids([3, 512, 7]));
  inputFile("ids-rank.safetensors", ids([3, 4, 5, 6], [4]));
  inputFile("ids-f32.safetensors", { input_ids: Tensor.from("f32", [1, 3], [3, 4, 5]) });
  inputFile("ids-empty.safetensors", ids([], [1, 0]));
  inputFile("no-ids.safetensors", { tokens: Tensor.from("i64", [1, 2], [3, 4]) });
  writeFileSync(P("broken.lir"), "module @m {\n  func @m(%x: f32[4] -> (y: f32[4]) {\n}\n");
  // An unbound ONNX model and the IR text of ling-tiny (compiled from its built-in config).
  execFileSync(process.execPath, [join(ROOT, "bin/lingc.mjs"), "compile", "ling-tiny", "--target", "onnx", "--out", P("onnx-out")], { stdio: "pipe" });
  copyFileSync(P("onnx-out", "forward.onnx"), P("tiny.onnx"));
  execFileSync(process.execPath, [join(ROOT, "bin/lingc.mjs"), "compile", "ling-tiny", "--target", "ir", "--out", P("onnx-out")], { stdio: "pipe" });
  copyFileSync(P("onnx-out", "forward.lir"), P("tiny.lir"));
  rmSync(P("onnx-out"), { recursive: true, force: true });
}, 120_000);

describe("bad input: exit code, first words, nothing changed", () => {
  it("the table covers at least 40 cases", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(40);
  });

  it.each(CASES.map((c) => [c.name, c] as const))("%s", async (_name, c) => {
    if (c.needsRoot && !root) return;
    const before = snapshot();
    const r = await cli(...c.argv());
    const lines = r.stderr.trim().split("\n");
    expect(lines[0], r.stderr).toMatch(/^lingc: error: /);
    expect(lines[0]!.replace(/^lingc: error: /, ""), r.stderr).toMatch(c.starts);
    expect(r.code, r.stderr).toBe(c.code);
    expect(snapshot()).toEqual(before);
  }, 60_000);
});
