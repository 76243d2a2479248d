// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011): a
// counter-based generator, so element i's random bits depend on (key, i) alone, not on which
// thread draws them or in what order. Host and device code alike (MEDIMG_HD): the CPU and CUDA
// noise kernels draw the same stream.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace medimg {

struct Philox4 {
  uint32_t v[4];
};

// The round multipliers and the key's bump per round (Weyl sequence).
constexpr uint32_t kPhiloxMultiplier0 = 0xD2511F53u, kPhiloxMultiplier1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxBump0 = 0x9E3779B9u, kPhiloxBump1 = 0xBB67AE85u;

// The 10-round bijection of `counter` under `key`. Always inlined on the host too, so that a
// loop over counters vectorises.
#if defined(__CUDACC__)
MEDIMG_HD
#else
[[gnu::always_inline]] inline
#endif
Philox4 philox4x32_10(Philox4 counter, uint32_t key0, uint32_t key1) {
  uint32_t* c = counter.v;
  // Each compiler its own unroll pragma (the host pass of a .cu file takes neither silently).
#if defined(__CUDA_ARCH__)
#pragma unroll
#elif !defined(__CUDACC__)
#pragma GCC unroll 10
#endif
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t(kPhiloxMultiplier0) * c[0], p1 = uint64_t(kPhiloxMultiplier1) * c[2];
    const uint32_t next0 = uint32_t(p1 >> 32) ^ c[1] ^ key0, next2 = uint32_t(p0 >> 32) ^ c[3] ^ key1;
    c[1] = uint32_t(p1);
    c[3] = uint32_t(p0);
    c[0] = next0;
    c[2] = next2;
    key0 += kPhiloxBump0;
    key1 += kPhiloxBump1;
  }
  return counter;
}

}  // namespace medimg
