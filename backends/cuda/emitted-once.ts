/**
 * What the CUDA emitter writes once however often its functions ask for it: generated kernels and
 * symbol maps, keyed by their text with a placeholder name, each named by the first asker's base
 * and a number unique in the program (which timeline stamps take as the kernel's id).
 */
import type { Kernel } from "../kernels/kir";
import { timelineStamps } from "./gen-limits";
import { renderCuda } from "./render";

/** Texts emitted once however often they are asked for (kernels, symbol maps), by content. */
export class Library {
  readonly sources: string[] = [];
  private readonly byBody = new Map<string, string>();

  /** `make(name)` renders the text with the given name; `key` is the text with a placeholder name. */
  add(key: string, base: string, make: (name: string) => string): string {
    let name = this.byBody.get(key);
    if (!name) {
      name = `${base}_${this.byBody.size}`;
      this.byBody.set(key, name);
      this.sources.push(make(name));
    }
    return name;
  }

  /** Kernels stamp their launches' timelines (LINGC_STAMPS=on: lingc_runtime.h), by the number their name ends in. */
  readonly stamps = timelineStamps();

  kernel(kernel: Kernel, base: string): string {
    const body = renderCuda({ ...kernel, name: "KERNEL" }, this.stamps);
    return this.add(body, base, (n) => body.replaceAll("KERNEL_ID", n.slice(n.lastIndexOf("_") + 1)).replace("KERNEL(", `${n}(`));
  }
}
