// Conv1d stacks of the Tacotron2 encoder and postnet ('same' padding, BatchNorm folded into the
// weights at pack time). Each conv is one cuBLAS GEMM over an im2col operand X [T][K*C_in]
// (taps outermost); these kernels build that operand and apply bias + activation after the GEMM,
// writing straight into the next conv's operand (scatter_taps), so no pass is spent on im2col.
// A ragged batch is its items laid end to end (item b: rows [off[b], off[b+1])); every tap that
// reaches past an item's ends reads zero, so each item is computed as if it were alone.
// Compile-time: CV_VEC (channels per thread; divides every channel count), ACT_HALF.
#include "common.cuh"

#ifndef CV_VEC
#define CV_VEC 4
#endif

// Encoder input: embedding rows of the symbol ids into the first conv's operand.
extern "C" __global__ void cv_embed_cols(const int* __restrict__ ids, int t_pad, const float* __restrict__ emb,
                                         int n_symbols, int dim, const int* __restrict__ off, int n_items, int n_rows,
                                         act_t* __restrict__ X, int ld, int K) {
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    const int chunks = dim / CV_VEC;
    if (i >= (long)n_rows * chunks) return;
    const int t = (int)(i / chunks), c = (int)(i % chunks) * CV_VEC;
    const int b = find_item(off, n_items, t);
    int id = ids[(long)b * t_pad + (t - off[b])];
    id = id < 0 ? 0 : (id >= n_symbols ? n_symbols - 1 : id);  // never read outside the table
    float x[CV_VEC];
#pragma unroll
    for (int v = 0; v < CV_VEC; ++v) x[v] = emb[(long)id * dim + c + v];
    scatter_taps<CV_VEC>(X, ld, dim, K, 1, t, off[b], off[b + 1], c, x);
}

// Postnet input: mel (B, n_mel, t_pad), channel-major as the decoder writes it.
extern "C" __global__ void cv_mel_cols(const float* __restrict__ mel, int t_pad, int n_mel,
                                       const int* __restrict__ off, int n_items, int n_rows,
                                       act_t* __restrict__ X, int ld, int K) {
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    const int chunks = n_mel / CV_VEC;
    if (i >= (long)n_rows * chunks) return;
    const int t = (int)(i / chunks), c = (int)(i % chunks) * CV_VEC;
    const int b = find_item(off, n_items, t);
    const int tl = t - off[b];
    float x[CV_VEC];
#pragma unroll
    for (int v = 0; v < CV_VEC; ++v) x[v] = mel[((long)b * n_mel + c + v) * t_pad + tl];
    scatter_taps<CV_VEC>(X, ld, n_mel, K, 1, t, off[b], off[b + 1], c, x);
}

// After a conv GEMM: act(Y + bias) (act 0 none, 1 relu, 2 tanh) into the next operand's taps
// (K_next = 1 writes a plain [T][C] matrix).
extern "C" __global__ void cv_epilogue(const act_t* __restrict__ Y, const float* __restrict__ bias, int C, int act,
                                       const int* __restrict__ off, int n_items, int n_rows,
                                       act_t* __restrict__ X, int ld, int K) {
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    const int chunks = C / CV_VEC;
    if (i >= (long)n_rows * chunks) return;
    const int t = (int)(i / chunks), c = (int)(i % chunks) * CV_VEC;
    const int b = find_item(off, n_items, t);
    const ActVec<CV_VEC> y = *reinterpret_cast<const ActVec<CV_VEC>*>(Y + (long)t * C + c);
    float x[CV_VEC];
#pragma unroll
    for (int v = 0; v < CV_VEC; ++v) {
        float s = to_f(y.v[v]) + bias[c + v];
        x[v] = act == 1 ? fmaxf(s, 0.0f) : (act == 2 ? tanhf(s) : s);
    }
    scatter_taps<CV_VEC>(X, ld, C, K, 1, t, off[b], off[b + 1], c, x);
}

// Postnet output: mel + (Y + bias), back to (B, n_mel, t_pad); frames past an item's length are
// left to the caller's zero fill.
extern "C" __global__ void cv_postnet_out(const act_t* __restrict__ Y, const float* __restrict__ bias,
                                          const float* __restrict__ mel, float* __restrict__ out, int t_pad, int n_mel,
                                          const int* __restrict__ off, int n_items, int n_rows) {
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)n_rows * n_mel) return;
    const int t = (int)(i / n_mel), c = (int)(i % n_mel);
    const int b = find_item(off, n_items, t);
    const long o = ((long)b * n_mel + c) * t_pad + (t - off[b]);
    out[o] = mel[o] + to_f(Y[(long)t * n_mel + c]) + bias[c];
}
