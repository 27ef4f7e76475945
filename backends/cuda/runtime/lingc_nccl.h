// NCCL, loaded at run time: the few declarations a pipeline stage needs (point-to-point send and
// receive, a broadcast, communicator setup), resolved from libnccl.so.2 with dlopen. The program
// then builds where nccl.h is absent (CI) and needs NCCL only when it runs as a stage of several.
// The signatures follow NCCL's documented C API (nccl.h of NCCL 2.x); only byte transfers are used.
#pragma once
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <cstddef>

namespace lingc {

struct NcclUniqueId {
  char internal[128];  // NCCL_UNIQUE_ID_BYTES
};
typedef struct NcclComm* NcclCommHandle;

/** libnccl.so.2's entry points (each returns ncclResult_t: 0 is ncclSuccess). */
struct Nccl {
  static constexpr int kBytes = 0;  // ncclInt8: transfers count bytes
  void* lib = nullptr;
  int (*get_unique_id)(NcclUniqueId*) = nullptr;
  int (*comm_init_rank)(NcclCommHandle*, int nranks, NcclUniqueId id, int rank) = nullptr;
  int (*send)(const void*, size_t count, int datatype, int peer, NcclCommHandle, cudaStream_t) = nullptr;
  int (*recv)(void*, size_t count, int datatype, int peer, NcclCommHandle, cudaStream_t) = nullptr;
  int (*broadcast)(const void*, void*, size_t count, int datatype, int root, NcclCommHandle, cudaStream_t) = nullptr;
  int (*comm_destroy)(NcclCommHandle) = nullptr;
  const char* (*error_string)(int) = nullptr;

  /** Loads the library; returns an error text, or nullptr when every symbol was found. */
  const char* load() {
    lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) lib = dlopen("libnccl.so", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) return dlerror();
    const char* missing = nullptr;
    auto sym = [&](const char* name) {
      void* p = dlsym(lib, name);
      if (!p && !missing) missing = name;
      return p;
    };
    get_unique_id = reinterpret_cast<decltype(get_unique_id)>(sym("ncclGetUniqueId"));
    comm_init_rank = reinterpret_cast<decltype(comm_init_rank)>(sym("ncclCommInitRank"));
    send = reinterpret_cast<decltype(send)>(sym("ncclSend"));
    recv = reinterpret_cast<decltype(recv)>(sym("ncclRecv"));
    broadcast = reinterpret_cast<decltype(broadcast)>(sym("ncclBroadcast"));
    comm_destroy = reinterpret_cast<decltype(comm_destroy)>(sym("ncclCommDestroy"));
    error_string = reinterpret_cast<decltype(error_string)>(sym("ncclGetErrorString"));
    return missing;
  }
};

}  // namespace lingc
