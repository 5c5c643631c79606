// WaveGlow inference kernels (the elementwise half; cuBLAS does every matrix product).
//
// Layout: time-major. A ragged batch is its items' group steps laid end to end: T rows in all,
// item b owning rows [off[b], off[b+1]). Per row:
//   state  [T][G]    float  the audio being inverted (G = n_group); the active channels of a flow
//                           are the last n_rem, and early noise already sits in the channels that
//                           the reverse flow prepends later, so prepending costs nothing
//   acc    [T][G]    float  the WN output (b, log_s) being accumulated, 2*n_half used
//   h      [T][C]    float  the WN residual stream
//   XS     [T][LD]   act_t  one GEMM operand per layer: [3 dilated-conv taps of h (3C) | cond (NMEL*G)]
//                           so in_layer and cond_layer are one GEMM (their outputs are summed anyway)
//   Y      [T][2C]   act_t  that GEMM's output (pre-activation)
//   A      [T][C]    act_t  gated activations tanh * sigmoid
//   R      [T][C]    act_t  res GEMM output
// The skip path never materialises: end(sum_i skip_i) = sum_i (W_end W_skip_i) acts_i + const, and
// W_end W_skip_i is only 2*n_half x C, so the gate kernel adds its contribution per row.
//
// Compile-time: WG_G (n_group), WG_C (WN channels), WG_VEC (channels per thread, divides C),
// ACT_HALF (FP16 engine).
#include "common.cuh"

#ifndef WG_G
#define WG_G 8
#endif
#ifndef WG_C
#define WG_C 256
#endif
#ifndef WG_VEC
#define WG_VEC 8
#endif
#define WG_CHUNKS (WG_C / WG_VEC)

// ---------------------------------------------------------------------------------------------
// Upsampler as one GEMM. ConvTranspose1d(k = TAPS*256, stride 256) cut to F*256 samples: sample
// 256 g + r of channel c is sum_j sum_ci mel[g - j][ci] * W[ci][c][r + 256 j] + bias[c]. So each
// frame g needs the column [mel[g], mel[g-1], ..., mel[g-TAPS+1], 1, 0 pad] (KU values); the
// weight matrix (packed on the host) maps it to all 256*NMEL outputs of that frame at once.
extern "C" __global__ void wg_upsample_cols(const float* __restrict__ mel, int n_mel, int f_max,
                                            const int* __restrict__ frame_off, int n_items, int taps,
                                            act_t* __restrict__ M, int ku, int n_frames_total) {
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)n_frames_total * ku) return;
    const int g = (int)(i / ku), col = (int)(i % ku);
    const int b = find_item(frame_off, n_items, g);
    const int f = g - frame_off[b];
    float v = 0.0f;
    if (col < taps * n_mel) {
        const int j = col / n_mel, ci = col % n_mel;
        if (f - j >= 0) v = mel[((long)b * n_mel + ci) * f_max + (f - j)];
    } else if (col == taps * n_mel) {
        v = 1.0f;  // the bias column
    }
    from_f(M[i], v);
}

// ---------------------------------------------------------------------------------------------
// z ~ N(0, sigma^2) from Philox4x32-10 (counter = element index / 4, key = seed) and Box-Muller:
// the same numbers for the same seed on any GPU and any launch shape.
__device__ __forceinline__ void philox_round(unsigned (&c)[4], unsigned k0, unsigned k1) {
    const unsigned M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
    const unsigned hi0 = __umulhi(M0, c[0]), lo0 = M0 * c[0];
    const unsigned hi1 = __umulhi(M1, c[2]), lo1 = M1 * c[2];
    const unsigned n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
    c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
}

extern "C" __global__ void wg_noise(float* __restrict__ out, long n, unsigned seed_lo, unsigned seed_hi,
                                    float sigma) {
    const long q = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (q * 4 >= n) return;
    unsigned c[4] = {(unsigned)q, (unsigned)((unsigned long long)q >> 32), 0u, 0u};
    unsigned k0 = seed_lo, k1 = seed_hi;
#pragma unroll
    for (int r = 0; r < 10; ++r) {
        philox_round(c, k0, k1);
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    float z[4];
#pragma unroll
    for (int p = 0; p < 2; ++p) {
        // 24-bit uniforms in (0, 1): never 0, so the log is finite
        const float u1 = ((c[2 * p] >> 8) + 0.5f) * (1.0f / 16777216.0f);
        const float u2 = ((c[2 * p + 1] >> 8) + 0.5f) * (1.0f / 16777216.0f);
        const float r = sqrtf(-2.0f * logf(u1));
        float s, co;
        sincospif(2.0f * u2, &s, &co);
        z[2 * p] = r * co; z[2 * p + 1] = r * s;
    }
    for (int j = 0; j < 4; ++j)
        if (q * 4 + j < n) out[q * 4 + j] = sigma * z[j];
}

// ---------------------------------------------------------------------------------------------
// Between two flows (one thread per row and WG_VEC channels; the few per-row scalars are recomputed
// by each of the row's threads rather than shared):
//   end of flow ke (has_end): audio_1 = (audio_1 - b) * exp(-log_s); audio = W_inv audio;
//     written to state_out (ping-pong, since other threads of the row still read state_in), and
//     with `out` set, also as samples to the padded output audio (the last flow);
//   start of flow ks (has_start): h = W_start audio_0 + b_start into h and the layer-0 taps of XS;
//     acc_out initialised to the folded end bias.
extern "C" __global__ void wg_flow_step(
    int n_rows, const int* __restrict__ off, int n_items,
    const float* __restrict__ state_in, float* __restrict__ state_out,
    const float* __restrict__ acc_in, float* __restrict__ acc_out,
    int has_end, int nr_e, const float* __restrict__ w_inv,   // [nr_e][nr_e]
    int has_start, int nr_s, const float* __restrict__ w_start, const float* __restrict__ b_start,  // [C][nh_s], [C]
    const float* __restrict__ end_bias,                                                              // [2 nh_s]
    float* __restrict__ h, act_t* __restrict__ XS, int ld, int kernel_size,
    float* __restrict__ out, int out_stride) {
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)n_rows * WG_CHUNKS) return;
    const int t = (int)(i / WG_CHUNKS), c = (int)(i % WG_CHUNKS) * WG_VEC;
    const int b = find_item(off, n_items, t);
    const int s0 = off[b], s1 = off[b + 1];

    float st[WG_G];
#pragma unroll
    for (int k = 0; k < WG_G; ++k) st[k] = state_in[(long)t * WG_G + k];

    if (has_end) {
        const int w = WG_G - nr_e, nh = nr_e / 2;
        float a[WG_G];
#pragma unroll
        for (int k = 0; k < WG_G; ++k) {
            a[k] = (k < nr_e) ? st[(w + k) % WG_G] : 0.0f;
        }
#pragma unroll
        for (int k = 0; k < WG_G; ++k) {
            if (k < nh) {
                const float bs = acc_in[(long)t * WG_G + k], ls = acc_in[(long)t * WG_G + nh + k];
#pragma unroll
                for (int m = 0; m < WG_G; ++m)  // a[nh + k] with compile-time indexing
                    if (m == nh + k) a[m] = (a[m] - bs) * expf(-ls);
            }
        }
#pragma unroll
        for (int k = 0; k < WG_G; ++k) {
            if (k < nr_e) {
                float v = 0.0f;
#pragma unroll
                for (int m = 0; m < WG_G; ++m)
                    if (m < nr_e) v += w_inv[k * nr_e + m] * a[m];
#pragma unroll
                for (int m = 0; m < WG_G; ++m)
                    if (m == w + k) st[m] = v;
            }
        }
        if (c == 0) {
#pragma unroll
            for (int k = 0; k < WG_G; ++k) state_out[(long)t * WG_G + k] = st[k];
            if (out != nullptr) {
#pragma unroll
                for (int k = 0; k < WG_G; ++k)
                    out[(long)b * out_stride + (long)(t - s0) * WG_G + k] = st[k];
            }
        }
    }
    if (has_start) {
        const int w = WG_G - nr_s, nh = nr_s / 2;
        float a0[WG_G];
#pragma unroll
        for (int k = 0; k < WG_G; ++k) a0[k] = 0.0f;
#pragma unroll
        for (int m = 0; m < WG_G; ++m)
#pragma unroll
            for (int k = 0; k < WG_G; ++k)
                if (k < nh && m == w + k) a0[k] = st[m];
        float x[WG_VEC];
#pragma unroll
        for (int v = 0; v < WG_VEC; ++v) {
            float s = b_start[c + v];
#pragma unroll
            for (int k = 0; k < WG_G; ++k)
                if (k < nh) s += w_start[(c + v) * nh + k] * a0[k];
            x[v] = s;
        }
        *reinterpret_cast<FVec<WG_VEC>*>(h + (long)t * WG_C + c) = *reinterpret_cast<FVec<WG_VEC>*>(x);
        scatter_taps<WG_VEC>(XS, ld, WG_C, kernel_size, 1, t, s0, s1, c, x);
        if (c == 0) {
#pragma unroll
            for (int k = 0; k < WG_G; ++k)
                if (k < 2 * nh) acc_out[(long)t * WG_G + k] = end_bias[k];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Gate: acts = tanh(Y[:C] + bias) * sigmoid(Y[C:] + bias) (in_layer and cond_layer biases summed),
// stored for the res GEMM, and the layer's share of the WN output, (W_end W_skip_i) acts, added
// to acc. One warp per row; each row is touched by one warp only, so no atomics. Warps loop over
// rows (grid-stride) and keep their slice of W_end W_skip_i in registers: re-reading it per row
// from L1 with lane-strided loads cost more than the whole row's memory traffic.
#define WG_NCH ((WG_C + 32 * WG_VEC - 1) / (32 * WG_VEC))  // channel chunks per lane
extern "C" __global__ void wg_gate(int n_rows, const act_t* __restrict__ Y, const float* __restrict__ gate_bias,
                                   act_t* __restrict__ A, const float* __restrict__ w_es,  // [n_out][C]
                                   int n_out, float* __restrict__ acc) {
    const int lane = threadIdx.x & 31;
    const int warps = gridDim.x * (blockDim.x >> 5);
    float we[WG_NCH][WG_G][WG_VEC];
    float gb[WG_NCH][2][WG_VEC];
#pragma unroll
    for (int ch = 0; ch < WG_NCH; ++ch) {
        const int c = (ch * 32 + lane) * WG_VEC;
#pragma unroll
        for (int v = 0; v < WG_VEC; ++v) {
            const bool ok = c < WG_C;
            gb[ch][0][v] = ok ? gate_bias[c + v] : 0.0f;
            gb[ch][1][v] = ok ? gate_bias[WG_C + c + v] : 0.0f;
#pragma unroll
            for (int o = 0; o < WG_G; ++o) we[ch][o][v] = (ok && o < n_out) ? w_es[o * WG_C + c + v] : 0.0f;
        }
    }
    for (int t = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); t < n_rows; t += warps) {
        float dot[WG_G];
#pragma unroll
        for (int o = 0; o < WG_G; ++o) dot[o] = 0.0f;
#pragma unroll
        for (int ch = 0; ch < WG_NCH; ++ch) {
            const int c = (ch * 32 + lane) * WG_VEC;
            if (c >= WG_C) break;
            const ActVec<WG_VEC> ya = *reinterpret_cast<const ActVec<WG_VEC>*>(Y + (long)t * 2 * WG_C + c);
            const ActVec<WG_VEC> yb = *reinterpret_cast<const ActVec<WG_VEC>*>(Y + (long)t * 2 * WG_C + WG_C + c);
            ActVec<WG_VEC> r;
#pragma unroll
            for (int v = 0; v < WG_VEC; ++v) {
                const float g = tanh_gate(to_f(ya.v[v]) + gb[ch][0][v]) * sigmoid_gate(to_f(yb.v[v]) + gb[ch][1][v]);
                from_f(r.v[v], g);
#pragma unroll
                for (int o = 0; o < WG_G; ++o) dot[o] += we[ch][o][v] * g;  // zero weights past n_out
            }
            *reinterpret_cast<ActVec<WG_VEC>*>(A + (long)t * WG_C + c) = r;
        }
#pragma unroll
        for (int o = 0; o < WG_G; ++o) {
            if (o < n_out) {
                float s = dot[o];
#pragma unroll
                for (int m = 16; m > 0; m >>= 1) s += __shfl_xor_sync(0xffffffffu, s, m);
                dot[o] = s;
            }
        }
        if (lane == 0) {
#pragma unroll
            for (int o = 0; o < WG_G; ++o)
                if (o < n_out) acc[(long)t * WG_G + o] += dot[o];
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Residual: h += R + b_res; then the next layer's dilated-conv taps (dilation d) of h into XS.
extern "C" __global__ void wg_residual(int n_rows, const int* __restrict__ off, int n_items,
                                       const act_t* __restrict__ R, const float* __restrict__ b_res,
                                       float* __restrict__ h, act_t* __restrict__ XS, int ld, int kernel_size,
                                       int d) {
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)n_rows * WG_CHUNKS) return;
    const int t = (int)(i / WG_CHUNKS), c = (int)(i % WG_CHUNKS) * WG_VEC;
    const int b = find_item(off, n_items, t);
    const int s0 = off[b], s1 = off[b + 1];
    const ActVec<WG_VEC> r = *reinterpret_cast<const ActVec<WG_VEC>*>(R + (long)t * WG_C + c);
    FVec<WG_VEC> hv = *reinterpret_cast<const FVec<WG_VEC>*>(h + (long)t * WG_C + c);
    float x[WG_VEC];
#pragma unroll
    for (int v = 0; v < WG_VEC; ++v) x[v] = hv.v[v] + to_f(r.v[v]) + b_res[c + v];
    *reinterpret_cast<FVec<WG_VEC>*>(h + (long)t * WG_C + c) = *reinterpret_cast<FVec<WG_VEC>*>(x);
    scatter_taps<WG_VEC>(XS, ld, WG_C, kernel_size, d, t, s0, s1, c, x);
}
