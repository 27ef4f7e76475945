// Device-to-device bandwidth between two GPUs of one host (the pipeline plan's link rate,
// CudaProfile.rates.linkBandwidth): peer copies of 1 GiB, one direction and both at once, median of 10.
// Build and run on a two-GPU machine: nvcc -O2 -o /tmp/p2p bench/cuda/p2p.cu && /tmp/p2p
#include <cuda_runtime.h>
#include <algorithm>
#include <cstdio>
#include <vector>

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { std::fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e_)); return 1; } } while (0)

int main() {
  int n = 0;
  CK(cudaGetDeviceCount(&n));
  if (n < 2) { std::fprintf(stderr, "p2p: needs two GPUs, found %d\n", n); return 1; }
  int can01 = 0, can10 = 0;
  CK(cudaDeviceCanAccessPeer(&can01, 0, 1));
  CK(cudaDeviceCanAccessPeer(&can10, 1, 0));
  const size_t bytes = 1ull << 30;
  void *a, *b, *c, *d;
  cudaStream_t s0, s1;
  CK(cudaSetDevice(0));
  if (can01) CK(cudaDeviceEnablePeerAccess(1, 0));
  CK(cudaMalloc(&a, bytes)); CK(cudaMalloc(&c, bytes)); CK(cudaStreamCreate(&s0));
  CK(cudaSetDevice(1));
  if (can10) CK(cudaDeviceEnablePeerAccess(0, 0));
  CK(cudaMalloc(&b, bytes)); CK(cudaMalloc(&d, bytes)); CK(cudaStreamCreate(&s1));
  auto time = [&](bool both) {
    std::vector<double> ms;
    for (int r = 0; r < 11; ++r) {
      cudaSetDevice(0);
      cudaEvent_t e0, e1;
      cudaEventCreate(&e0); cudaEventCreate(&e1);
      cudaEventRecord(e0, s0);
      cudaMemcpyPeerAsync(b, 1, a, 0, bytes, s0);
      if (both) { cudaSetDevice(1); cudaMemcpyPeerAsync(c, 0, d, 1, bytes, s1); cudaSetDevice(0); }
      cudaEventRecord(e1, s0);
      cudaEventSynchronize(e1);
      cudaSetDevice(1); cudaStreamSynchronize(s1); cudaSetDevice(0);
      float t = 0; cudaEventElapsedTime(&t, e0, e1);
      if (r) ms.push_back(t);  // the first is a warm-up
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
  };
  const double one = time(false), two = time(true);
  std::printf("{\"peer_access\": [%d, %d], \"bytes\": %zu, \"one_direction_GBps\": %.1f, \"both_directions_each_GBps\": %.1f}\n", can01, can10, bytes, bytes / (one * 1e-3) / 1e9, bytes / (two * 1e-3) / 1e9);
  return 0;
}
