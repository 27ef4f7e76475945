/**
 * The browser demo: ling-tiny compiled to WGSL at build time (by the lingc esbuild plugin), run on
 * the page's WebGPU adapter with the checkpoint fetched from `model.safetensors`. The prompt comes
 * from `?prompt=1,2,3;4,5,6&steps=6`. Shows the generated ids and per-kernel timings.
 */
import model, { loadGraphs } from "lingc:ling-tiny";
import { generationPlan } from "../backends/generation";
import { Tensor } from "../ir/tensor";

const $ = (id: string) => document.getElementById(id)!;

declare global {
  interface Window {
    /** The prompts' prefill logits, set once generation is done (the browser test reads them). */
    lingcLogits?: { shape: number[]; data: number[] };
  }
}

async function main(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const prompts = (params.get("prompt") ?? "1,2,3,4,5,6,7,8").split(";").map((s) => s.split(",").map(Number));
  const steps = Number(params.get("steps") ?? "6");
  if (!("gpu" in navigator)) throw new Error("this browser has no WebGPU (navigator.gpu)");
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error("no WebGPU adapter");
  $("adapter").textContent = `${adapter.info.vendor} ${adapter.info.architecture} ${adapter.info.description}`.trim() || "(unnamed)";
  // The limits the model was compiled for above WebGPU's defaults (none for the baseline profile).
  const device = await adapter.requestDevice({ requiredLimits: { ...model.requiredLimits } });
  $("status").textContent = "loading weights";
  // A missing file is said as such (a server's 404 page read as safetensors would be "an absurd header length").
  const response = await fetch("model.safetensors");
  if (!response.ok) throw new Error(`model.safetensors: the server answered ${response.status} ${response.statusText} (serve the checkpoint's weights beside the page)`);
  const bytes = await response.arrayBuffer();
  // Generation through the public API (what a web app gets from the import).
  const m = await model.load(device, bytes);
  $("status").textContent = "generating";
  const ids = await m.generate(prompts, { maxNewTokens: steps, eosTokenIds: [] });
  $("ids").textContent = ids.map((t) => t.join(" ")).join("\n");

  // The graphs as lingc runs them, for the prompts' logits and each kernel's time.
  const profile = { on: false };
  const graphs = await loadGraphs(device, bytes, profile);
  const plan = generationPlan(graphs.signatures);
  const prefill = graphs.graphs[plan.prefill.name]!;
  // The prompts' logits (when the prompts have one length: one batch), for checks against a reference.
  if (prompts.every((p) => p.length === prompts[0]!.length)) {
    const batch = Tensor.from("i64", [prompts.length, prompts[0]!.length], prompts.flat());
    const out = await prefill.run({ [plan.tokens.prefill]: batch });
    const logits = out[plan.logits.prefill]!;
    window.lingcLogits = { shape: [...logits.shape], data: Array.from(logits.data) };
  }

  profile.on = true;
  const one = Tensor.from("i64", [1, prompts[0]!.length], prompts[0]!);
  await prefill.run({ [plan.tokens.prefill]: one });
  profile.on = false;
  const body = $("timings").querySelector("tbody")!;
  for (const t of prefill.lastTimings ?? []) {
    const tr = document.createElement("tr");
    for (const [text, cls] of [[t.name, ""], [t.label, ""], [t.ms.toFixed(3), "ms"]] as const) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  $("status").textContent = "done";
}

main().catch((e: unknown) => {
  $("status").textContent = `error: ${e instanceof Error ? e.message : String(e)}`;
});
