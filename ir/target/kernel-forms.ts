/**
 * Geometry of generated kernel forms that both a target's dispatch (ir/target) and the kernel
 * generators (backends/kernels/gen) need: written once here, where both may import it.
 */

/** Attention's split form (few query rows, a decode step): workgroups a query row, each over its share of the keys. */
export const ATTENTION_SPLITS = 16;
/** The most query rows the split form takes (its scratch holds this many; more rows fill the GPU as they are). */
export const ATTENTION_SPLIT_MAX_ROWS = 64;
