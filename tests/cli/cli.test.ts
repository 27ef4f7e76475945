/** The command line as a user runs it: the acceptance numbers, outputs, and errors. */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readAllSafetensors } from "../../backends/weights/safetensors";
import { buildLing2 } from "../../models/ling2";
import { resolveModel } from "../../models/resolve";
import { printModule } from "../../ir/print";
import { parsePipeline, runPasses } from "../../compiler/passes/manager";
import { cli, lingcBin } from "../support/cli";
import { rowSets, tensorDiff } from "../support/compare";
import { GOLDEN_DIR, GOLDEN_FILE, ROOT, scratchDir } from "../support/paths";
import { goldenGreedy } from "../support/golden";

const dir = scratchDir();
const golden = readAllSafetensors(GOLDEN_FILE);

describe("lingc info", () => {
  it.each([
    ["ling-1t", 999.7e9, 51.05e9],
    ["ling-flash-2.0", 102.89e9, 6.152e9],
    ["ling-mini-2.0", 16.256e9, 1.433e9],
  ])("%s: total and active parameters match LING2.md within 0.1%%", async (model, total, active) => {
    const r = await cli("info", model, "--json");
    expect(r.code).toBe(0);
    const p = JSON.parse(r.stdout).parameters;
    expect(Math.abs(p.total / total - 1)).toBeLessThan(1e-3);
    expect(Math.abs(p.active / active - 1)).toBeLessThan(1e-3);
  });

  it("prints a readable report", async () => {
    const r = await cli("info", "ling-1t");
    expect(r.stdout).toContain("999.7B total, 51.05B active per token");
    expect(r.stdout).toContain("80 (4 dense, 76 MoE) + 1 MTP");
    expect(r.stdout).toMatch(/forward +\d+ ops in 4 functions/);
  });
});

describe("lingc compile / opt", () => {
  it("writes <out>/<graph>.lir for each graph, and opt reads it back unchanged", async () => {
    for (const graph of ["forward", "prefill", "decode"]) {
      const out = join(dir, "ir");
      const r = await cli("compile", "ling-1t", "--graph", graph, "--target", "ir", "--out", out);
      expect(r.code, r.stderr).toBe(0);
      const path = join(out, `${graph}.lir`);
      const text = readFileSync(path, "utf8");
      // Generation's first step is the prefill graph; forward declares no role in it.
      const role = graph === "forward" ? "" : `generation = "${graph}", .*`;
      expect(text.split("\n")[0]).toMatch(new RegExp(`^module @${graph} attributes \\{config = ".*", ${role}model = "ling-1t".*\\} \\{$`));
      const o = await cli("opt", path);
      expect(o.code, o.stderr).toBe(0);
      expect(o.stdout).toBe(text);
    }
  });

  it("--print-after prints the IR after that pass; --time-passes reports timings", async () => {
    const r = await cli("compile", "ling-tiny", "--out", join(dir, "pa"), "--print-after=cse", "--time-passes");
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.startsWith("// ----- IR after cse -----\nmodule @forward")).toBe(true);
    expect(r.stderr).toMatch(/pass cse +[\d.]+ ms/);
  });

  it("opt runs passes given by name and names an unknown one", async () => {
    await cli("compile", "ling-tiny", "--graph", "decode", "--out", join(dir, "o"), "--passes", "");
    const ok = await cli("opt", join(dir, "o", "decode.lir"), "--passes", "cse,dce", "--verify-each");
    expect(ok.code, ok.stderr).toBe(0);
    const bad = await cli("opt", join(dir, "o", "decode.lir"), "--passes", "cse,fuse");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toBe("lingc: error: --passes: unknown pass 'fuse' (available: cse, dce, castlinear, decompose, fusion, select, fp8, autodiff, recompute, adamw, pipeline)\n");
  });

  it("reports a broken IR file at its line and column", async () => {
    const path = join(dir, "o", "decode.lir");
    const text = readFileSync(path, "utf8").replace("rms_norm(", "rms_nrom(");
    const broken = join(dir, "broken.lir");
    writeFileSync(broken, text);
    const r = await cli("opt", broken);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`^lingc: error: ${broken.replace(/[.]/g, "\\.")}:\\d+:\\d+: unknown op 'rms_nrom'\\n$`));
  });

  it("refuses an unknown target, naming the choices", async () => {
    const r = await cli("compile", "ling-tiny", "--target", "tpu", "--out", join(dir, "tpu"));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/option '--target' must be one of ir, onnx, wgsl, cuda, got 'tpu'/);
    expect(existsSync(join(dir, "tpu"))).toBe(false);
  });
});

describe("lingc run / generate on the golden checkpoint", () => {
  it("run reads only the graph's inputs from --input (another tensor may be of a dtype lingc does not compute with)", async () => {
    // input_ids (i64) and an f64 tensor, as a file of reference values might hold.
    const ids = golden["input_ids"]!;
    const header = JSON.stringify({ input_ids: { dtype: "I64", shape: ids.shape, data_offsets: [0, ids.data.length * 8] }, reference: { dtype: "F64", shape: [2], data_offsets: [ids.data.length * 8, ids.data.length * 8 + 16] } }).padEnd(256, " ");
    const body = new Uint8Array(ids.data.length * 8 + 16);
    const view = new DataView(body.buffer);
    Array.from(ids.data).forEach((v, i) => view.setBigInt64(i * 8, BigInt(v), true));
    view.setFloat64(ids.data.length * 8, 0.5, true);
    const file = new Uint8Array(8 + header.length + body.length);
    new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
    file.set(new TextEncoder().encode(header), 8);
    file.set(body, 8 + header.length);
    writeFileSync(join(dir, "with-f64.safetensors"), file);
    const r = await cli("run", GOLDEN_DIR, "--input", join(dir, "with-f64.safetensors"), "--out", join(dir, "with-f64-out.safetensors"));
    expect(r.code, r.stderr).toBe(0);
    expect(tensorDiff(readAllSafetensors(join(dir, "with-f64-out.safetensors"))["logits"]!, golden["logits"]!)).toBeLessThanOrEqual(1e-4);
  });

  it("run writes logits and mtp_logits within 1e-4 of the golden, and observed values on request", async () => {
    const out = join(dir, "run.safetensors");
    const r = await cli("run", GOLDEN_DIR, "--backend", "interp", "--input", GOLDEN_FILE, "--out", out, "--observe", "hidden.*,model.layers.*.mlp.topk_idx");
    expect(r.code, r.stderr).toBe(0);
    const got = readAllSafetensors(out);
    expect(got["logits"]!.dtype).toBe("f32");
    expect(tensorDiff(got["logits"]!, golden["logits"]!)).toBeLessThanOrEqual(1e-4);
    expect(tensorDiff(got["mtp_logits"]!, golden["mtp_logits"]!)).toBeLessThanOrEqual(1e-4);
    expect(tensorDiff(got["hidden.2"]!, golden["hidden.2"]!)).toBeLessThanOrEqual(1e-4);
    expect(rowSets(got["model.layers.3.mlp.topk_idx"]!)).toEqual(rowSets(golden["topk_idx.3"]!));
  });

  it("generate prints only the new ids, one line per sequence", async () => {
    const { prompts, tokens, steps } = goldenGreedy(golden);
    const prompt = prompts.map((p) => p.join(",")).join(";");
    const r = await cli("generate", GOLDEN_DIR, "--backend", "interp", "--prompt", prompt, "--max-new-tokens", String(steps));
    expect(r.code, r.stderr).toBe(0);
    const lines = tokens.map((t) => t.join(" "));
    expect(r.stdout).toBe(lines.join("\n") + "\n");
  });
});

describe("usage errors", () => {
  it.each([
    [["frobnicate"], /unknown command 'frobnicate'/],
    [["info"], /'lingc info' needs <model>/],
    [["info", "ling-1t", "--jsn"], /unknown option '--jsn' for 'info'/],
    [["compile", "ling-1t", "--graph", "backward", "--out", "x"], /option '--graph' must be one of forward, prefill, decode, draft, train, train-step, got 'backward'/],
    [["compile", "ling-1t"], /'lingc compile' needs --out DIR/],
    [["generate", GOLDEN_DIR, "--prompt", "1,x", "--max-new-tokens", "2"], /--prompt: sequence 1, item 2 \('x'\) is not a token id/],
    [["generate", GOLDEN_DIR, "--prompt", "1,2", "--max-new-tokens", "-3"], /option '--max-new-tokens' needs a value|must be an integer/],
  ])("%j", async (argv, message) => {
    const r = await cli(...(argv as string[]));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
  });

  it("explains input errors in one line with exit code 1", async () => {
    const cases: [string[], RegExp][] = [
      [["info", "no-such-model"], /unknown model 'no-such-model': not a built-in \(ling-1t, ling-flash-2\.0, ling-mini-2\.0, ling-tiny\)/],
      [["run", "ling-tiny", "--input", GOLDEN_FILE, "--out", join(dir, "x.safetensors")], /built-in config with no weights/],
      [["run", GOLDEN_DIR, "--input", join(GOLDEN_DIR, "config.json"), "--out", join(dir, "x.safetensors")], /config\.json: header length/],
      [["generate", GOLDEN_DIR, "--prompt", "1,512", "--max-new-tokens", "2"], /prompt 1, token 2: id 512 is not in the vocabulary \(0\.\.511\)/],
      [["run", GOLDEN_DIR, "--backend", "cuda", "--input", GOLDEN_FILE, "--out", join(dir, "x.safetensors")], /the cuda backend runs on an NVIDIA GPU and this machine has none/],
    ];
    for (const [argv, message] of cases) {
      const r = await cli(...argv);
      expect(r.code, argv.join(" ")).toBe(1);
      expect(r.stderr).toMatch(message);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
    expect(existsSync(join(dir, "x.safetensors"))).toBe(false);
  });

  it("--help describes each command", async () => {
    const r = await cli("compile", "--help");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^usage: lingc compile \[<model>\] \[options\]/);
    expect(r.stdout).toContain("--print-after PASS");
    const top = await cli("--help");
    for (const c of ["info", "compile", "opt", "run", "generate"]) expect(top.stdout).toContain(`  ${c} `);
  });
});

describe("the built executable", () => {
  it("runs, and its IR dump names the model source file (source maps on)", () => {
    const out = join(dir, "bin");
    const r = lingcBin("compile", "ling-tiny", "--out", out);
    expect(r.code, r.stderr).toBe(0);
    const text = readFileSync(join(out, "forward.lir"), "utf8");
    expect(text).toMatch(/loc\("models\/ling2\.ts":\d+:\d+\)/);
    expect(readdirSync(out)).toEqual(["forward.lir"]);
    // Tracing from the TypeScript sources (here) and from the bundle gives the same bytes.
    const m = buildLing2(resolveModel("ling-tiny").config, "forward");
    runPasses(m, parsePipeline("cse,dce"));
    expect(text).toBe(printModule(m));
  });

  it("shows no stack trace for an internal-looking failure unless --debug", () => {
    const r = lingcBin("run", GOLDEN_DIR, "--input", join(dir, "missing.safetensors"), "--out", join(dir, "y.safetensors"));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^lingc: error: cannot open .*missing\.safetensors: ENOENT\n$/);
  });
});

describe("--observe", () => {
  it("a pattern that matches nothing is an error naming it (exit 1), and no output is written", async () => {
    const out = join(scratchDir("lingc-observe-"), "o.safetensors");
    const r = await cli("run", GOLDEN_DIR, "--observe", "hidden.*,nosuch.*", "--input", GOLDEN_FILE, "--out", out);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^lingc: error: --observe 'nosuch\.\*' matched no value of graph forward that the interp backend exposes/);
    expect(existsSync(out)).toBe(false);
  });
});

describe("generate's bounds", () => {
  it("refuses a prompt plus --max-new-tokens past max_position_embeddings before any work (exit 1)", async () => {
    const r = await cli("generate", GOLDEN_DIR, "--prompt", "1,2,3", "--max-new-tokens", "1000000000");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^lingc: error: a prompt of 3 tokens plus --max-new-tokens 1000000000 is 1000000003 positions, past the model's max_position_embeddings 2048/);
    expect(r.stdout).toBe("");
  });
});

describe("token ids of any graph", () => {
  it("the train graph's input_ids outside the vocabulary are refused before the run, by position (exit 1)", async () => {
    const { writeSafetensors } = await import("../../backends/weights/safetensors");
    const { Tensor } = await import("../../ir/tensor");
    const dir = scratchDir("lingc-ids-");
    writeSafetensors(join(dir, "ids.safetensors"), { input_ids: Tensor.from("i64", [2, 4], [1, 2, -1, 4, 5, 6, 7, 9999]) });
    for (const backend of ["interp", "onnx"]) {
      const r = await cli("run", GOLDEN_DIR, "--graph", "train", "--backend", backend, "--input", join(dir, "ids.safetensors"), "--out", join(dir, "o.safetensors"));
      expect(r.code, backend).toBe(1);
      expect(r.stderr).toMatch(/tensor "input_ids" holds -1 at \[0, 2\], outside the vocabulary 0\.\.511\n$/);
    }
  });
});


describe("a reader that stops early", () => {
  it("`lingc plan ... | head -1` stops quietly with exit 0 (no EPIPE stack trace)", () => {
    const r = spawnSync("bash", ["-c", `node ${join(ROOT, "bin/lingc.mjs")} plan ling-1t --stages 16 | head -1; exit \${PIPESTATUS[0]}`], { encoding: "utf8" });
    expect(r.stdout).toMatch(/^ling-1t, prefill of 1x4096, 16 stages/);
    expect(r.stderr).toBe("");
    expect(r.status).toBe(0);
  });
});
