/** `lingc info <model>`: the architecture, parameter counts computed from the IR, and op counts. */
import { buildLing2, GRAPHS } from "../../../models/ling2";
import { resolveModel } from "../../../models/resolve";
import { isMoeLayer, type LingConfig } from "../../../models/config";
import { countOps, countParams, residentWeightBytes } from "../../../ir/params";
import { ProfileRegistry } from "../../../ir/target";
import { parsePipeline, runPasses } from "../../passes/manager";
import { flag } from "../args";
import type { Command } from "./command";
import { passesOption } from "./backend-options";

function human(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toPrecision(4)}B`;
  if (n >= 1e6) return `${(n / 1e6).toPrecision(4)}M`;
  if (n >= 1e3) return `${(n / 1e3).toPrecision(4)}K`;
  return String(n);
}

function bytes(n: number): string {
  if (n >= 1e12) return `${(n / 1e12).toPrecision(4)} TB`;
  if (n >= 1e9) return `${(n / 1e9).toPrecision(4)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toPrecision(4)} MB`;
  return `${n} B`;
}

/** `passes`: a pipeline whose effect on the weights' bytes is reported (`--passes fp8`). */
export function modelInfo(cfg: LingConfig, passes?: string) {
  const forward = buildLing2(cfg, "forward");
  const params = countParams(forward);
  const weightBytes: { declared: number; afterPasses?: number; passes?: string } = { declared: residentWeightBytes(forward) };
  if (passes !== undefined) {
    const m = buildLing2(cfg, "forward");
    runPasses(m, parsePipeline(passes), { profiles: new ProfileRegistry() });
    weightBytes.afterPasses = residentWeightBytes(m);
    weightBytes.passes = passes;
  }
  const moeLayers = Array.from({ length: cfg.numLayers }, (_, i) => i).filter((i) => isMoeLayer(cfg, i)).length;
  // A model without MTP layers has no draft graph.
  const built = GRAPHS.filter((g) => g !== "draft" || cfg.numMtpLayers > 0);
  const graphs = Object.fromEntries(built.map((g) => [g, countOps(g === "forward" ? forward : buildLing2(cfg, g))]));
  return {
    model: cfg.name,
    dtype: cfg.dtype,
    layers: { total: cfg.numLayers, dense: cfg.numLayers - moeLayers, moe: moeLayers, mtp: cfg.numMtpLayers },
    sizes: {
      hidden: cfg.hiddenSize,
      vocab: cfg.vocabSize,
      heads: cfg.numHeads,
      kvHeads: cfg.numKvHeads,
      headDim: cfg.headDim,
      rotaryDim: cfg.rotaryDim,
      denseIntermediate: cfg.intermediateSize,
      experts: cfg.numExperts,
      expertsPerToken: cfg.numExpertsPerTok,
      sharedExperts: cfg.numSharedExperts,
      expertIntermediate: cfg.moeIntermediateSize,
      groups: cfg.nGroup,
      topkGroups: cfg.topkGroup,
      routedScalingFactor: cfg.routedScalingFactor,
    },
    parameters: params,
    weightBytes,
    graphs,
  };
}

export const info: Command = {
  spec: {
    name: "info",
    summary: "Shows a model's architecture, its total and active parameters (counted from the IR's weight declarations) and its op counts.",
    positionals: [{ name: "model", help: "a built-in config (ling-1t, ling-flash-2.0, ling-mini-2.0, ling-tiny) or a checkpoint folder" }],
    options: [
      { name: "json", help: "print the report as JSON" },
      { name: "passes", value: "LIST", help: "also report the weights' bytes after this pipeline (e.g. fp8: quantized at load)" },
    ],
  },
  async run(args, io) {
    const { config: cfg } = resolveModel(args.positionals[0]!);
    const r = modelInfo(cfg, passesOption(args));
    if (flag(args, "json")) {
      io.out(JSON.stringify(r, null, 2) + "\n");
      return 0;
    }
    const s = r.sizes;
    const p = r.parameters;
    const lines = [
      `${r.model} (Ling 2.0, ${r.dtype})`,
      `  layers      ${r.layers.total} (${r.layers.dense} dense, ${r.layers.moe} MoE)${r.layers.mtp ? ` + ${r.layers.mtp} MTP` : ""}`,
      `  hidden      ${s.hidden}, vocab ${s.vocab}`,
      `  attention   ${s.heads} heads, ${s.kvHeads} KV heads, head_dim ${s.headDim}, rotary dims ${s.rotaryDim}`,
      `  dense FFN   ${s.denseIntermediate}`,
      `  MoE         ${s.experts} experts x ${s.expertIntermediate}, top-${s.expertsPerToken} in ${s.topkGroups} of ${s.groups} groups, ${s.sharedExperts} shared, scale ${s.routedScalingFactor}`,
      `  parameters  ${human(p.total)} total, ${human(p.active)} active per token (embedding and head included, MTP excluded)`,
    ];
    if (p.mtpTotal) lines.push(`              MTP: ${human(p.mtpTotal)} total, ${human(p.mtpActive)} active`);
    const wb = r.weightBytes;
    lines.push(`  weights     ${bytes(wb.declared)} as declared${wb.afterPasses !== undefined ? `, ${bytes(wb.afterPasses)} after --passes ${wb.passes} (${(wb.afterPasses / wb.declared).toFixed(3)}x)` : ""}`);
    for (const [g, c] of Object.entries(r.graphs)) {
      lines.push(`  ${g.padEnd(11)} ${c.written} ops in ${c.functions.length} functions (${c.functions.map((f) => `${f.name} ${f.ops}`).join(", ")}); ${c.executed} ops per run`);
    }
    io.out(lines.join("\n") + "\n");
    return 0;
  },
};
