// Helpers shared by the encoder, postnet, WaveGlow and denoiser kernels.
//
// Activations that feed cuBLAS are `act_t`: float in the FP32 engine, __half in the FP16 engine
// (chosen at compile time with -DACT_HALF). Everything kept across layers (WaveGlow's residual
// stream, the audio, accumulators) stays float.
#pragma once
#include <cuda_fp16.h>

#ifdef ACT_HALF
typedef __half act_t;
#else
typedef float act_t;
#endif

__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ void from_f(float& d, float x) { d = x; }
__device__ __forceinline__ void from_f(__half& d, float x) { d = __float2half_rn(x); }

// N contiguous act_t as one aligned struct, so loads and stores are as wide as the hardware allows
// (16 bytes for 8 halves; a 32-byte struct of 8 floats becomes two 16-byte accesses).
template <int N>
struct alignas(sizeof(act_t) * N >= 16 ? 16 : sizeof(act_t) * N) ActVec {
    act_t v[N];
};
template <int N>
struct alignas(sizeof(float) * N >= 16 ? 16 : sizeof(float) * N) FVec {
    float v[N];
};

__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

// The FP16 engine's gate uses the SFU's tanh (sm_75+, max relative error ~2^-11, the size of the
// float16 rounding its result gets anyway) instead of libdevice's ~30-instruction tanhf; the FP32
// engine keeps the accurate functions.
__device__ __forceinline__ float tanh_approx(float x) {
#if __CUDA_ARCH__ >= 750
    float y;
    asm("tanh.approx.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
#else
    return tanhf(x);
#endif
}
__device__ __forceinline__ float tanh_gate(float x) {
#if defined(ACT_HALF)
    return tanh_approx(x);
#else
    return tanhf(x);
#endif
}
__device__ __forceinline__ float sigmoid_gate(float x) {
#if defined(ACT_HALF) && __CUDA_ARCH__ >= 750
    return fmaf(0.5f, tanh_gate(0.5f * x), 0.5f);
#else
    return sigmoid_f(x);
#endif
}

// Ragged batches are stored as items laid end to end along time; `off` holds B+1 row offsets.
// Returns the item that holds `row` (largest b with off[b] <= row).
__device__ __forceinline__ int find_item(const int* __restrict__ off, int n_items, int row) {
    int lo = 0, hi = n_items - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (__ldg(off + mid) <= row) lo = mid; else hi = mid - 1;
    }
    return lo;
}

// im2col by scatter: the value x[t] of a 'same' conv's input (odd kernel K, dilation d) appears in
// K rows of the im2col matrix: row r = t - (j - K/2) * d, tap j, for each tap whose row lies in t's
// item [s0, s1). Row t's taps that reach outside the item are the conv's zero padding; thread t
// writes those zeros too, so every element of rows [s0, s1) is written exactly once.
// X: row-major, row stride ld; tap j occupies columns [j*C, (j+1)*C). Writes N channels at c.
template <int N>
__device__ __forceinline__ void scatter_taps(act_t* __restrict__ X, long ld, int C, int K, int d, int t,
                                             int s0, int s1, int c, const float (&x)[N]) {
    ActVec<N> v, z;
#pragma unroll
    for (int i = 0; i < N; ++i) { from_f(v.v[i], x[i]); from_f(z.v[i], 0.0f); }
    const int half = K / 2;
    for (int j = 0; j < K; ++j) {
        const int r = t - (j - half) * d;      // the row whose tap j reads x[t]
        if (r >= s0 && r < s1)
            *reinterpret_cast<ActVec<N>*>(X + (long)r * ld + (long)j * C + c) = v;
        const int src = t + (j - half) * d;    // what row t's tap j reads
        if (src < s0 || src >= s1)
            *reinterpret_cast<ActVec<N>*>(X + (long)t * ld + (long)j * C + c) = z;
    }
}
