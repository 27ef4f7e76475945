/**
 * Geometry of generated kernel forms that both a target's dispatch (ir/target) and the kernel
 * generators (backends/kernels/gen) need: written once here, where both may import it.
 */

/** Attention's split form (few query rows, a decode step): workgroups a query row, each over its share of the keys. */
export const ATTENTION_SPLITS = 16;
/** The most query rows the split form takes (its scratch holds this many; more rows fill the GPU as they are). */
export const ATTENTION_SPLIT_MAX_ROWS = 64;

/**
 * The GQA decode form on CUDA (bf16): workgroups a (batch, KV head, query position), each over its
 * share of the keys for all of the KV head's query heads.
 */
export const DECODE_ATTENTION_SPLITS = 32;
/** The most query rows (batch x heads x positions) it takes: its scratch, [rows, splits, d + 2] f32, holds this many (8.5 MB at d 128). */
export const DECODE_ATTENTION_MAX_ROWS = 512;
/** The most query heads a KV head may have in it (each lane keeps 8 output columns of each in registers). */
export const DECODE_ATTENTION_MAX_GROUP = 8;
