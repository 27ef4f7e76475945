/**
 * What an emitted CUDA folder holds besides its model sources: the runtime's sources (copied from
 * backends/cuda/runtime), the Makefile that builds a program per model source, the launcher of a
 * pipeline's stage programs, and nvcc's flags for a profile.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { LingcError } from "../../ir/errors";
import type { CudaProfile } from "../../ir/target";

const HERE = dirname(fileURLToPath(import.meta.url));

/** Where the runtime sources are: beside this file in the repo, or under dist/ in the bundle. */
function runtimeDir(): string {
  for (const d of [join(HERE, "runtime"), join(HERE, "../backends/cuda/runtime")]) {
    try {
      readFileSync(join(d, "lingc_runtime.h"));
      return d;
    } catch {
      /* try the next */
    }
  }
  throw new LingcError("the CUDA runtime sources (backends/cuda/runtime) are missing from this installation");
}

/** The runtime: lingc_runtime.cu includes the .cuh parts (one translation unit). */
const RUNTIME_PARTS = ["lingc_nccl.h", "lingc_device.cuh", "lingc_experts.cuh", "lingc_attention.cuh", "lingc_misc.cuh", "lingc_selftest.cuh", "lingc_pipeline.cuh"];
export const RUNTIME_FILES = ["lingc_blas.h", "lingc_runtime.h", "lingc_runtime.cu", ...RUNTIME_PARTS];

/** The runtime's source files by name, as the emitted folder holds them. */
export function runtimeSources(): Record<string, string> {
  const dir = runtimeDir();
  return Object.fromEntries(RUNTIME_FILES.map((f) => [f, readFileSync(join(dir, f), "utf8")]));
}

/** What a staged folder's processes are started through: each rank runs its stage's program. */
export const LAUNCHER = `#!/bin/sh
# Runs this rank's stage program (RANK from the launcher: torchrun, mpirun or srun set it), e.g.
#   torchrun --nproc-per-node N --no-python ./launch.sh run --checkpoint DIR --graph forward --input IN --out OUT
# Each rank takes the GPU LOCAL_RANK; rank 0 hands out NCCL's id at MASTER_ADDR:MASTER_PORT (the
# next port under torchrun's agent store). Graph inputs are read by each rank that needs them; the
# last rank writes the outputs. With mpirun or srun, set RANK, WORLD_SIZE and LOCAL_RANK from theirs.
RANK=\${RANK:-\${OMPI_COMM_WORLD_RANK:-\$SLURM_PROCID}}
WORLD_SIZE=\${WORLD_SIZE:-\${OMPI_COMM_WORLD_SIZE:-\$SLURM_NTASKS}}
LOCAL_RANK=\${LOCAL_RANK:-\${OMPI_COMM_WORLD_LOCAL_RANK:-\$SLURM_LOCALID}}
export RANK WORLD_SIZE LOCAL_RANK
exec "\$(dirname "\$0")/lingc_stage\${RANK:?RANK is not set}" "\$@"
`;

/**
 * nvcc's flags for the profile. The code is built for the architecture itself, PTX included
 * (`-gencode arch=compute_90a,code=sm_90a`): nvcc 13's `-arch=sm_90a` also emits generic compute_90
 * PTX, which cannot hold Hopper's warpgroup MMAs.
 */
function nvccCodeFlags(profile: CudaProfile): string {
  return `-gencode arch=${profile.arch.replace(/^sm_/, "compute_")},code=${profile.arch} -O3 -std=c++17 --expt-relaxed-constexpr`;
}

/**
 * The Makefile's flags: `--split-compile=0` lets nvcc's device compilers (cicc, ptxas) split a
 * translation unit over every core (a Ling-1T model.cu alone on a 2-core machine: 23.3 s, split 16.6 s;
 * nvcc 13.0), the same code and warnings.
 */
export function nvccFlags(profile: CudaProfile): string {
  return `${nvccCodeFlags(profile)} --split-compile=0`;
}

/**
 * What CI checks the emitted sources with: no warning of any kind. Not split: CI's two test workers
 * already keep its two cores busy (the suite measured 517 s of vitest with the split, 498 s without,
 * in runs that vary by about 10%: no gain shown there).
 */
export function nvccStrictFlags(profile: CudaProfile): string {
  return `${nvccCodeFlags(profile)} -Werror all-warnings`;
}

/** The Makefile: the runtime built once, and a program per model source (one, or one per stage). */
export function makefile(profile: CudaProfile, models: readonly string[]): string {
  const exe = (m: string) => (m === "model" ? "lingc_model" : m.replace(/^model\.stage/, "lingc_stage"));
  return `# Builds the lingc model runner with nvcc and nothing else.
NVCC ?= nvcc
NVCCFLAGS ?= ${nvccFlags(profile)}
# cuBLASLt: the CUDA toolkit's, or else the nvidia-cublas Python package's (as on machines with PyTorch).
CUBLAS_HOME ?= $(shell python3 -c "import nvidia.cublas, os; print(os.path.dirname(nvidia.cublas.__file__))" 2>/dev/null)
CUBLASLT ?= $(firstword $(wildcard $(CUBLAS_HOME)/lib/libcublasLt.so) $(wildcard $(CUBLAS_HOME)/lib/libcublasLt.so.*))
ifneq ($(CUBLASLT),)
  NVCCFLAGS += -I$(CUBLAS_HOME)/include
  LIBS = $(CUBLASLT) -Xlinker -rpath=$(CUBLAS_HOME)/lib -ldl
else
  LIBS = -lcublasLt -ldl
endif

all: ${models.map(exe).join(" ")}
${models.map((m) => `
${exe(m)}: ${m}.o lingc_runtime.o
\t$(NVCC) $(NVCCFLAGS) -o $@ $^ $(LIBS)

${m}.o: ${m}.cu lingc_runtime.h lingc_blas.h
\t$(NVCC) $(NVCCFLAGS) -c -o $@ ${m}.cu
`).join("")}
lingc_runtime.o: lingc_runtime.cu lingc_runtime.h lingc_blas.h ${RUNTIME_PARTS.join(" ")}
\t$(NVCC) $(NVCCFLAGS) -c -o $@ lingc_runtime.cu

clean:
\trm -f ${models.map(exe).join(" ")} *.o
`;
}
