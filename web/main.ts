/**
 * The browser demo: ling-tiny compiled to WGSL at build time (by the lingc esbuild plugin), run on
 * the page's WebGPU adapter with the checkpoint fetched from `model.safetensors`. A prompt box (or
 * `?prompt=1,2,3;4,5,6&steps=6`, which also starts it), the new ids streamed as they are chosen,
 * tokens/s for prefill and decode, and each kernel's time (GPU timestamps where the adapter has
 * them) aggregated by kernel kind as a chart.
 */
import model, { loadGraphs } from "lingc:ling-tiny";
import { generationPlan } from "../backends/generation";
import { Tensor } from "../ir/tensor";

const $ = (id: string) => document.getElementById(id)!;

declare global {
  interface Window {
    /** The prompts' logits at every position, set once generation is done (the browser test reads them). */
    lingcLogits?: { shape: number[]; data: number[] };
  }
}

function parsePrompts(text: string): number[][] {
  const prompts = text.split(";").map((s) => s.split(",").map((x) => x.trim()).filter(Boolean).map(Number));
  if (prompts.some((p) => !p.length || p.some((id) => !Number.isInteger(id) || id < 0))) throw new Error("the prompt must be token ids, comma separated, ';' between sequences");
  return prompts;
}

async function setup(): Promise<{ device: GPUDevice; bytes: ArrayBuffer }> {
  if (!("gpu" in navigator)) throw new Error("this browser has no WebGPU (navigator.gpu)");
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error("no WebGPU adapter");
  $("adapter").textContent = `${adapter.info.vendor} ${adapter.info.architecture} ${adapter.info.description}`.trim() || "(unnamed)";
  // The limits the model was compiled for above WebGPU's defaults (none for the baseline profile);
  // timestamp queries, where the adapter has them, time each kernel on the GPU.
  const device = await adapter.requestDevice({ requiredLimits: { ...model.requiredLimits }, requiredFeatures: adapter.features.has("timestamp-query") ? ["timestamp-query"] : [] });
  $("status").textContent = "loading weights";
  // A missing file is said as such (a server's 404 page read as safetensors would be "an absurd header length").
  const response = await fetch("model.safetensors");
  if (!response.ok) throw new Error(`model.safetensors: the server answered ${response.status} ${response.statusText} (serve the checkpoint's weights beside the page)`);
  return { device, bytes: await response.arrayBuffer() };
}

async function run(device: GPUDevice, bytes: ArrayBuffer, prompts: number[][], steps: number): Promise<void> {
  // Generation through the public API (what a web app gets from the import), streamed.
  const m = await model.load(device, bytes);
  $("status").textContent = "generating";
  const lines = prompts.map(() => [] as number[]);
  const t0 = performance.now();
  let first = 0;
  let last = 0;
  await m.generate(prompts, {
    maxNewTokens: steps,
    eosTokenIds: [],
    onToken: (seq, token) => {
      last = performance.now();
      if (!first) first = last;
      lines[seq]!.push(token);
      $("ids").textContent = lines.map((t) => t.join(" ")).join("\n");
    },
  });
  m.close();
  const promptTokens = prompts.reduce((a, p) => a + p.length, 0);
  $("prefill-speed").textContent = (promptTokens / ((first - t0) / 1000)).toFixed(1);
  $("decode-speed").textContent = steps > 1 ? ((prompts.length * (steps - 1)) / ((last - first) / 1000)).toFixed(1) : "-";

  // The graphs as lingc runs them, for the prompts' logits and each kernel's time.
  const profile = { on: false };
  const graphs = await loadGraphs(device, bytes, profile);
  const plan = generationPlan(graphs.signatures);
  const prefill = graphs.graphs[plan.prefill.name]!;
  // Every position's logits of the prompts (when they have one length: one batch), by the forward
  // graph (generation's prefill computes the last position's only), for checks against a reference.
  if (prompts.every((p) => p.length === prompts[0]!.length)) {
    const batch = Tensor.from("i64", [prompts.length, prompts[0]!.length], prompts.flat());
    const out = await graphs.graphs["forward"]!.run({ [plan.tokens.prefill]: batch });
    const logits = out["logits"]!;
    window.lingcLogits = { shape: [...logits.shape], data: Array.from(logits.data) };
  }
  profile.on = true;
  await prefill.run({ [plan.tokens.prefill]: Tensor.from("i64", [1, prompts[0]!.length], prompts[0]!) });
  profile.on = false;
  const timings = prefill.lastTimings ?? [];
  graphs.close();
  showTimings(timings);
}

/** A kernel's kind: its name less its layer function and copy number (`moe_layer.swiglu.1` -> swiglu). */
const kindOf = (name: string) => {
  const parts = name.split(".");
  return parts.length > 1 ? parts[1]! : parts[0]!;
};

/** The kernels' times by kind as bars, and each kernel in a table. */
function showTimings(timings: readonly { name: string; label: string; ms: number; clock: string }[]): void {
  $("clock").textContent = timings[0]?.clock === "gpu" ? "GPU timestamps" : "wall clock per submission (no timestamp queries on this adapter)";
  const byKind = new Map<string, number>();
  for (const t of timings) byKind.set(kindOf(t.name), (byKind.get(kindOf(t.name)) ?? 0) + t.ms);
  const kinds = [...byKind].sort((a, b) => b[1] - a[1]);
  const most = kinds[0]?.[1] ?? 1;
  $("chart").replaceChildren(
    ...kinds.map(([kind, ms]) => {
      const row = document.createElement("div");
      row.className = "row";
      row.dataset["kind"] = kind;
      const name = document.createElement("span");
      name.textContent = kind;
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = `${(100 * ms) / most}%`;
      const v = document.createElement("span");
      v.className = "ms";
      v.textContent = `${ms.toFixed(3)} ms`;
      row.append(name, bar, v);
      return row;
    }),
  );
  const body = $("timings").querySelector("tbody")!;
  body.replaceChildren();
  for (const t of timings) {
    const tr = document.createElement("tr");
    for (const [text, cls] of [[t.name, ""], [t.label, ""], [t.ms.toFixed(3), "ms"]] as const) {
      const td = document.createElement("td");
      td.textContent = text;
      if (cls) td.className = cls;
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

async function main(): Promise<void> {
  const params = new URLSearchParams(location.search);
  if (params.get("prompt")) ($("prompt") as HTMLTextAreaElement).value = params.get("prompt")!;
  if (params.get("steps")) ($("steps") as HTMLInputElement).value = params.get("steps")!;
  const { device, bytes } = await setup();
  const go = $("go") as HTMLButtonElement;
  const start = async () => {
    go.disabled = true;
    try {
      await run(device, bytes, parsePrompts(($("prompt") as HTMLTextAreaElement).value), Number(($("steps") as HTMLInputElement).value));
      $("status").textContent = "done";
    } catch (e) {
      $("status").textContent = `error: ${e instanceof Error ? e.message : String(e)}`;
    } finally {
      go.disabled = false;
    }
  };
  go.onclick = start;
  $("status").textContent = "ready";
  if (params.get("prompt")) await start();
}

main().catch((e: unknown) => {
  $("status").textContent = `error: ${e instanceof Error ? e.message : String(e)}`;
});
