/**
 * Output discipline (issue 17, item 1), as a user meets it: an output that is a device is written
 * through (never replaced) and a full one is an error; a FIFO or folder is refused; an output that is
 * one of the inputs is refused; a failed run leaves a pre-existing output as it was and no temp file.
 * Device nodes are made for the test in a temp folder (mknod: root, as CI runs).
 */
import { execFileSync } from "node:child_process";
import { copyFileSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { cli } from "../support/cli";
import { GOLDEN_DIR, GOLDEN_FILE, scratchDir } from "../support/paths";

const root = process.getuid?.() === 0;
if (!root) console.warn("tests/cli/outputs.test.ts: the device-node cases need root (mknod); skipped");

describe("output files", () => {
  const dir = scratchDir("lingc-outputs-");
  const run = (out: string, input = GOLDEN_FILE, model = GOLDEN_DIR) => cli("run", model, "--input", input, "--out", out);
  const noTemp = () => expect(readdirSync(dir).filter((f) => f.includes(".tmp-"))).toEqual([]);

  it.skipIf(!root)("a character device is written through and stays a device; a full one is an error (exit 1)", async () => {
    execFileSync("mknod", [join(dir, "null"), "c", "1", "3"]);
    execFileSync("mknod", [join(dir, "full"), "c", "1", "7"]);
    const ok = await run(join(dir, "null"));
    expect(ok.code, ok.stderr).toBe(0);
    expect(statSync(join(dir, "null")).isCharacterDevice()).toBe(true);
    const full = await run(join(dir, "full"));
    expect(full.code).toBe(1);
    expect(full.stderr).toMatch(/^lingc: error: cannot write .*full: ENOSPC/);
    expect(statSync(join(dir, "full")).isCharacterDevice()).toBe(true);
    noTemp();
  });

  const refusals: { name: string; setup: () => { out: string; input?: string; model?: string; keep: string }; message: RegExp }[] = [
    {
      name: "a FIFO",
      setup: () => {
        execFileSync("mkfifo", [join(dir, "fifo")]);
        return { out: join(dir, "fifo"), keep: join(dir, "fifo") };
      },
      message: /cannot write .*fifo: it is not a regular file/,
    },
    {
      name: "a folder",
      setup: () => {
        mkdirSync(join(dir, "folder"), { recursive: true });
        return { out: join(dir, "folder"), keep: join(dir, "folder") };
      },
      message: /cannot write .*folder: it is a folder/,
    },
    {
      name: "the --input file",
      setup: () => {
        copyFileSync(GOLDEN_FILE, join(dir, "in.safetensors"));
        return { out: join(dir, "in.safetensors"), input: join(dir, "in.safetensors"), keep: join(dir, "in.safetensors") };
      },
      message: /--out .*in\.safetensors is an input of this command/,
    },
    {
      name: "the checkpoint's weights",
      setup: () => {
        const ck = join(dir, "ck");
        mkdirSync(ck, { recursive: true });
        for (const f of ["config.json", "model.safetensors"]) copyFileSync(join(GOLDEN_DIR, f), join(ck, f));
        return { out: join(ck, "model.safetensors"), model: ck, keep: join(ck, "model.safetensors") };
      },
      message: /--out .*model\.safetensors is an input of this command \(a file of/,
    },
    {
      name: "the checkpoint's config.json",
      setup: () => ({ out: join(dir, "ck", "config.json"), model: join(dir, "ck"), keep: join(dir, "ck", "config.json") }),
      message: /--out .*config\.json is an input of this command/,
    },
  ];
  for (const c of refusals) {
    it(`refuses ${c.name} as the output (exit 1), leaving it as it was`, async () => {
      if (c.name === "a FIFO" && !root) return;
      const s = c.setup();
      const before = statSync(s.keep).isFile() ? readFileSync(s.keep) : undefined;
      const kind = statSync(s.keep).mode;
      const r = await run(s.out, s.input, s.model);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(c.message);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(statSync(s.keep).mode).toBe(kind);
      if (before) expect(readFileSync(s.keep).equals(before)).toBe(true);
      noTemp();
    });
  }

  it("a run that fails leaves an existing output untouched", async () => {
    const out = join(dir, "existing.safetensors");
    writeFileSync(out, "keep me");
    const r = await run(out, join(GOLDEN_DIR, "config.json"));
    expect(r.code).toBe(1);
    expect(readFileSync(out, "utf8")).toBe("keep me");
    noTemp();
  });

  it("other commands refuse an output that is one of their inputs: opt and init", async () => {
    const lir = join(dir, "m.lir");
    copyFileSync(join(__dirname, "..", "..", "examples", "two-layers.lir"), lir);
    const before = readFileSync(lir);
    let r = await cli("opt", lir, "--passes", "dce", "--out", lir);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--out .*m\.lir is an input of this command/);
    expect(readFileSync(lir).equals(before)).toBe(true);
    const cfgDir = join(dir, "cfg");
    mkdirSync(cfgDir, { recursive: true });
    copyFileSync(join(GOLDEN_DIR, "config.json"), join(cfgDir, "config.json"));
    const cfg = readFileSync(join(cfgDir, "config.json"));
    r = await cli("init", cfgDir, "--weights", join(cfgDir, "config.json"));
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--weights .*config\.json is an input of this command/);
    expect(readFileSync(join(cfgDir, "config.json")).equals(cfg)).toBe(true);
    r = await cli("init", cfgDir, "--weights", join(cfgDir, "w.safetensors"), "--inputs", join(cfgDir, "w.safetensors"), "--dims", "B=1,S=4");
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--inputs .*w\.safetensors is the --weights file too/);
    noTemp();
  });
});

