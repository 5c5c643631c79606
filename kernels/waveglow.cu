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
// Cond folding (kernels/wg_gemm_gate.cu, GG_FOLD): F[r] = W_cond U_r (float32, the rows of W_cond
// interleaved as wg_gemm_gate wants them: 2j tanh, 2j+1 sigmoid of channel j; columns = the
// upsampler's KU: taps * n_mel mel values, then its bias column) -> Wf[r] = F[r][:, :k_mel] in
// act_t, and the phase's gate bias bf[r] = gate_b + F[r][:, k_mel] in plain channel order
// (tanh 0..C-1, sigmoid C..2C-1), as the epilogue reads it.
extern "C" __global__ void wg_fold_finish(const float* __restrict__ F, int phases, int c2, int ku, int k_mel,
                                          const float* __restrict__ gate_b, act_t* __restrict__ wf,
                                          float* __restrict__ bf) {
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    const long n_w = (long)phases * c2 * k_mel;
    if (i < n_w) {
        const long row = i / k_mel;
        from_f(wf[i], F[row * ku + i % k_mel]);
    } else if (i < n_w + (long)phases * c2) {
        const long row = i - n_w;  // phase r, interleaved row n
        const int r = (int)(row / c2), n = (int)(row % c2);
        const int ch = (n & 1) * (c2 / 2) + n / 2;
        bf[(long)r * c2 + ch] = gate_b[ch] + F[row * ku + k_mel];
    }
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

// ---------------------------------------------------------------------------------------------
// FP16 engine, one kernel per WN layer after its big GEMM: gate + res GEMM (tensor cores) + residual
// + taps, and the layer's skip share folded into acc. Replaces wg_gate -> cuBLAS res GEMM ->
// wg_residual, whose intermediates (acts A, res output R) then never touch device memory.
//
// Persistent: one 512-thread block per SM (grid-stride over tiles of WG_BM rows). The block keeps
// the whole B operand in shared memory, loaded once (cp.async, overlapped with the first gate):
//   Wp [NT][KS][32 lanes][4 halves]  NT = C/8 + 2 n-tiles, KS = C/16 k-steps, in mma.m16n8k16 B
//   fragment order (packed on the host) so each lane reads its 8 bytes with one conflict-free load.
//   n-tiles 0..C/8-1: W_res (out x in); C/8: hi = fp16(W_end W_skip_i), C/8+1: lo = fp16(rest), so
//   the skip product keeps ~fp32 weights (the acts are the fp16 values the res GEMM uses too).
// Shared memory: Wp (NT*KS*256 B) | per group of warps: As [BM][C+8] half | Ss [min(KS,warps)][BM][8]
// float | Rs [BM][C+8] float | rb [2][BM][2] int (202 KiB at C = 256 in one group of 32-row tiles,
// 194 KiB in two of 16; 70 KiB at C = 128). tts_desktop/engine/waveglow.py, fused_smem_bytes, mirrors
// this and picks the shape the GPU's per-block limit allows (only sm_90/sm_100 fit C = 256).
// Per tile: Y rows -> acts (fp32 math, SFU tanh) -> As (fp16, shared) ; sync ; warp w of the group's
// W warps computes columns [w*C/W, (w+1)*C/W) of R for all WG_BM rows (ldmatrix A, mma.sync) and
// a k-slice of the skip product ; R and the skip partials to shared memory ; sync ; epilogue by
// rows with 16-byte accesses (as wg_residual): h += R + b_res, h stored and its K dilated taps scattered into XS
// (fp16); skip partials summed in a fixed order (bitwise reproducible) and added to acc.
// This tile's h and acc and the next tile's Y are loaded before the first barrier, so their
// latency overlaps the gate math and the MMAs.
// h: float [T][C], or nullptr: then h lives only as fp16 in XS's centre tap (read there, not
// written separately; the FP16 engine's cheaper mode).
// WG_ACTS_IN: Y [T][C] holds the gated acts already (wg_gemm_gate.cu's output), so the gate phase
// is a copy into As; else Y [T][2C] is [tanh pre-activations | sigmoid ones]. A compile-time switch:
// as a run-time flag (uniform branches) it cost the default path 4.5 % of WaveGlow at batch 32.
//
// WG_GROUPS 2: the block's warps form two independent groups of 8, each with its own tiles (WG_BM
// rows), its own As/Ss/Rs/rb and its own named barrier; only Wp is shared (loaded once; one
// block-wide barrier, after each group's first gate, makes it visible to both). The phases of a tile use different units (gate: MUFU and
// loads; MMAs: tensor cores; epilogue: stores), and with one group per SM half every warp of the
// block waited at the same barriers and ran the same phase at once; two groups out of step overlap
// them, as two blocks per SM would if Wp (139 KB) fitted twice.
#ifndef WG_BM
#define WG_BM 32
#endif
#ifndef WG_GROUPS
#define WG_GROUPS 1
#endif
#define WGF_WARPS 16
#define WGF_THREADS (WGF_WARPS * 32)
#define WGF_GW (WGF_WARPS / WG_GROUPS)       // warps per group
#define WGF_GT (WGF_GW * 32)                 // threads per group
#define WGF_NT (WG_C / 8 + 2)
#define WGF_KS (WG_C / 16)
#define WGF_NTW (WG_C / 8 / WGF_GW)          // res n-tiles per warp
#define WGF_MT (WG_BM / 16)                  // m-tiles per tile
#define WGF_LDA (WG_C + 8)                   // As row stride (halves): conflict-free ldmatrix
#define WGF_LDR (WG_C + 8)                   // Rs row stride (floats)
#define WGF_ITEMS (WG_BM * (WG_C / 8) / WGF_GT)  // gate items (row, 8 channels) per thread
#define WGF_SKW (WGF_KS < WGF_GW ? WGF_KS : WGF_GW)  // warps holding skip partials
// one group's shared memory after Wp, in bytes: As | Ss | Rs | rb
#define WGF_GROUP_SMEM (WG_BM * WGF_LDA * 2 + WGF_SKW * WG_BM * 8 * 4 + WG_BM * WGF_LDR * 4 + 2 * WG_BM * 2 * 4)

#if (WG_C % 128 == 0) && (WG_BM % 16 == 0) && (WG_BM * WG_C / 8) % WGF_GT == 0 && WG_G <= 8 \
    && (WG_GROUPS == 1 || WG_GROUPS == 2) && WGF_GT % (WG_C / 8) == 0
#define WGF_OK 1
#endif

// the barrier of one group of warps (id 0 is __syncthreads' own)
__device__ __forceinline__ void wgf_group_sync(int group) {
    if (WG_GROUPS == 1) {
        __syncthreads();
    } else {
        asm volatile("bar.sync %0, %1;\n" ::"r"(group + 1), "n"(WGF_GT) : "memory");
    }
}

__device__ __forceinline__ void wgf_mma(float (&c)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

#ifdef WGF_OK
extern "C" __global__ void __launch_bounds__(WGF_THREADS, 1)
wg_layer_fused(int n_rows, const int* __restrict__ off, int n_items,
               const __half* __restrict__ Y, const float* __restrict__ gate_bias,
               const uint2* __restrict__ Wp, const float* __restrict__ b_res, int has_res,
               int n_out, float* __restrict__ acc,
               float* __restrict__ h, __half* __restrict__ XS, int ld, int kernel_size, int d) {
    extern __shared__ __align__(16) unsigned char wgf_smem[];
    const int group = threadIdx.x / WGF_GT;
    uint2* Wsm = reinterpret_cast<uint2*>(wgf_smem);                                   // [NT][KS][32]
    unsigned char* gsm = wgf_smem + WGF_NT * WGF_KS * 32 * 8 + group * WGF_GROUP_SMEM;  // this group's
    __half* As = reinterpret_cast<__half*>(gsm);                                       // [BM][LDA]
    float* Ss = reinterpret_cast<float*>(As + WG_BM * WGF_LDA);                        // [SKW][BM][8]
    float* Rs = Ss + WGF_SKW * WG_BM * 8;                                              // [BM][LDR]
    int* rb = reinterpret_cast<int*>(Rs + WG_BM * WGF_LDR);                            // [2][BM][2]

    // tid, warp: within the group (a group is the whole block when WG_GROUPS == 1)
    const int tid = threadIdx.x % WGF_GT, lane = tid & 31, warp = tid >> 5;
    const int gq = lane >> 2, tg = lane & 3;
    const int n_tiles = (n_rows + WG_BM - 1) / WG_BM;
    const int half = kernel_size / 2;
    const int first_tile = blockIdx.x * WG_GROUPS + group, tile_step = gridDim.x * WG_GROUPS;

    // B operand into shared memory (only the skip tiles for the last layer, which has no res)
    {
        const int first = has_res ? 0 : (WG_C / 8) * WGF_KS * 32 / 2;  // in 16-byte units
        const int total = WGF_NT * WGF_KS * 32 / 2;
        const unsigned base = (unsigned)__cvta_generic_to_shared(Wsm);
        for (int i = first + (int)threadIdx.x; i < total; i += WGF_THREADS)
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(base + i * 16),
                         "l"(reinterpret_cast<const uint4*>(Wp) + i));
        asm volatile("cp.async.commit_group;\n" ::);
    }

    // this thread's channels (gate and epilogue) are fixed: chunk = tid % (C/8), WGF_GT % (C/8) == 0
    const int gch = (tid % (WG_C / 8)) * 8;
    float gb0[8], gb1[8], bres[8];
#pragma unroll
    for (int v = 0; v < 8; ++v) {
        gb0[v] = gate_bias[gch + v];
        gb1[v] = gate_bias[WG_C + gch + v];
        bres[v] = has_res ? b_res[gch + v] : 0.0f;
    }

    uint4 ya[WGF_ITEMS], yb[WGF_ITEMS];
    auto load_y = [&](int tile) {
#pragma unroll
        for (int it = 0; it < WGF_ITEMS; ++it) {
            const int r = (tid + it * WGF_GT) / (WG_C / 8);
            const int t = tile * WG_BM + r;
            if (t < n_rows) {
#ifdef WG_ACTS_IN
                ya[it] = __ldcs(reinterpret_cast<const uint4*>(Y + (long)t * WG_C + gch));
#else
                ya[it] = __ldcs(reinterpret_cast<const uint4*>(Y + (long)t * 2 * WG_C + gch));
                yb[it] = __ldcs(reinterpret_cast<const uint4*>(Y + (long)t * 2 * WG_C + WG_C + gch));
#endif
            } else {
                ya[it] = make_uint4(0, 0, 0, 0); yb[it] = ya[it];
            }
        }
    };
    if (first_tile < n_tiles) load_y(first_tile);
    // Wp must have landed, from every thread's copies, before the first MMA. One group: the first
    // tile's barrier after cp.async.wait_all does it. Two groups: one block-wide barrier, which every
    // thread passes exactly once: after its group's first gate (so the copies overlap that gate), or
    // after the loop in a group that has no tile.
    bool w_ready = WG_GROUPS == 1;

    int parity = 0;
    for (int tile = first_tile; tile < n_tiles; tile += tile_step, parity ^= 1) {
        const int t0 = tile * WG_BM;
        int* rbp = rb + parity * WG_BM * 2;  // double-buffered: the previous tile's epilogue may still read
        // this tile's acc and h early: their latency overlaps the gate and the MMAs
        float accv = 0.0f;
        if (tid < WG_BM * 8) {
            const int t = t0 + (tid >> 3), o = tid & 7;
            if (o < n_out && t < n_rows) accv = acc[(long)t * WG_G + o];
        }
        uint4 hraw[WGF_ITEMS][2];
        if (has_res) {
#pragma unroll
            for (int it = 0; it < WGF_ITEMS; ++it) {
                const int t = t0 + (tid + it * WGF_GT) / (WG_C / 8);
                hraw[it][0] = hraw[it][1] = make_uint4(0, 0, 0, 0);
                if (t < n_rows) {
                    if (h != nullptr) {
                        hraw[it][0] = *reinterpret_cast<const uint4*>(h + (long)t * WG_C + gch);
                        hraw[it][1] = *reinterpret_cast<const uint4*>(h + (long)t * WG_C + gch + 4);
                    } else {
                        hraw[it][0] = *reinterpret_cast<const uint4*>(XS + (long)t * ld + (long)half * WG_C + gch);
                    }
                }
            }
        }
        // ---- gate -> As (WG_ACTS_IN: the acts come gated already; rows past n_rows loaded as 0)
#pragma unroll
        for (int it = 0; it < WGF_ITEMS; ++it) {
            const int r = (tid + it * WGF_GT) / (WG_C / 8);
#ifdef WG_ACTS_IN
            *reinterpret_cast<uint4*>(As + r * WGF_LDA + gch) = ya[it];
            continue;
#endif
            const __half* pa = reinterpret_cast<const __half*>(&ya[it]);
            const __half* pb = reinterpret_cast<const __half*>(&yb[it]);
            uint4 o;
            __half* po = reinterpret_cast<__half*>(&o);
#pragma unroll
            for (int v = 0; v < 8; ++v) {
                const float th = tanh_approx(__half2float(pa[v]) + gb0[v]);
                const float sg = fmaf(0.5f, tanh_approx(0.5f * (__half2float(pb[v]) + gb1[v])), 0.5f);
                po[v] = __float2half_rn(t0 + r < n_rows ? th * sg : 0.0f);
            }
            *reinterpret_cast<uint4*>(As + r * WGF_LDA + gch) = o;
        }
        if (tid < WG_BM) {
            const int t = t0 + tid;
            if (t < n_rows) {
                const int b = find_item(off, n_items, t);
                rbp[2 * tid] = off[b]; rbp[2 * tid + 1] = off[b + 1];
            }
        }
        // ---- next tile's Y in flight during the MMAs and the epilogue
        if (tile + tile_step < n_tiles) load_y(tile + tile_step);
        if (!w_ready) {
            asm volatile("cp.async.wait_all;\n" ::);
            __syncthreads();
            w_ready = true;
        }
        if (WG_GROUPS == 1) asm volatile("cp.async.wait_all;\n" ::);
        wgf_group_sync(group);

        // ---- MMAs: R columns of this warp, and a k-slice of the skip product
        float cr[WGF_MT][WGF_NTW][4];
        float cs[WGF_MT][4];
#pragma unroll
        for (int mt = 0; mt < WGF_MT; ++mt) {
#pragma unroll
            for (int q = 0; q < 4; ++q) cs[mt][q] = 0.0f;
#pragma unroll
            for (int j = 0; j < WGF_NTW; ++j)
#pragma unroll
                for (int q = 0; q < 4; ++q) cr[mt][j][q] = 0.0f;
        }
        const unsigned as_base = (unsigned)__cvta_generic_to_shared(As);
#pragma unroll 4
        for (int ks = 0; ks < WGF_KS; ++ks) {
            const bool skip_here = (ks % WGF_GW) == warp;
            if (!has_res && !skip_here) continue;
            unsigned a[WGF_MT][4];
#pragma unroll
            for (int mt = 0; mt < WGF_MT; ++mt) {
                const unsigned addr = as_base + (unsigned)(((mt * 16 + (lane & 15)) * WGF_LDA + ks * 16 + (lane >> 4) * 8) * 2);
                asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                             : "=r"(a[mt][0]), "=r"(a[mt][1]), "=r"(a[mt][2]), "=r"(a[mt][3])
                             : "r"(addr));
            }
            if (has_res) {
#pragma unroll
                for (int j = 0; j < WGF_NTW; ++j) {
                    const uint2 b = Wsm[((warp * WGF_NTW + j) * WGF_KS + ks) * 32 + lane];
#pragma unroll
                    for (int mt = 0; mt < WGF_MT; ++mt) wgf_mma(cr[mt][j], a[mt], b.x, b.y);
                }
            }
            if (skip_here) {
                const uint2 bh = Wsm[((WG_C / 8) * WGF_KS + ks) * 32 + lane];
                const uint2 bl = Wsm[((WG_C / 8 + 1) * WGF_KS + ks) * 32 + lane];
#pragma unroll
                for (int mt = 0; mt < WGF_MT; ++mt) {
                    wgf_mma(cs[mt], a[mt], bh.x, bh.y);
                    wgf_mma(cs[mt], a[mt], bl.x, bl.y);
                }
            }
        }
        // skip partials -> Ss[warp] (columns past n_out are exact zeros: zero weights). Summed in a
        // fixed order after the barrier, not with atomics: the result is bitwise reproducible.
        // R -> Rs (row stride C+8 floats: the float2 stores of a half-warp hit 32 distinct banks).
        if (warp < WGF_SKW) {
            float* sw = Ss + warp * WG_BM * 8;
#pragma unroll
            for (int mt = 0; mt < WGF_MT; ++mt) {
                const int r = mt * 16 + gq;
                *reinterpret_cast<float2*>(sw + r * 8 + tg * 2) = make_float2(cs[mt][0], cs[mt][1]);
                *reinterpret_cast<float2*>(sw + (r + 8) * 8 + tg * 2) = make_float2(cs[mt][2], cs[mt][3]);
            }
        }
        if (has_res) {
#pragma unroll
            for (int mt = 0; mt < WGF_MT; ++mt)
#pragma unroll
                for (int j = 0; j < WGF_NTW; ++j) {
                    const int r = mt * 16 + gq, n = (warp * WGF_NTW + j) * 8 + tg * 2;
                    *reinterpret_cast<float2*>(Rs + r * WGF_LDR + n) = make_float2(cr[mt][j][0], cr[mt][j][1]);
                    *reinterpret_cast<float2*>(Rs + (r + 8) * WGF_LDR + n) = make_float2(cr[mt][j][2], cr[mt][j][3]);
                }
        }
        wgf_group_sync(group);
        // ---- epilogue by rows (16-byte accesses): h += R + b_res, taps of the next layer (dilation d)
        if (has_res) {
#pragma unroll
            for (int it = 0; it < WGF_ITEMS; ++it) {
                const int r = (tid + it * WGF_GT) / (WG_C / 8);
                const int t = t0 + r;
                if (t >= n_rows) continue;
                float x[8];
                const float4 r0 = *reinterpret_cast<const float4*>(Rs + r * WGF_LDR + gch);
                const float4 r1 = *reinterpret_cast<const float4*>(Rs + r * WGF_LDR + gch + 4);
                const float rr8[8] = {r0.x, r0.y, r0.z, r0.w, r1.x, r1.y, r1.z, r1.w};
                if (h != nullptr) {
                    const float* hp = reinterpret_cast<const float*>(&hraw[it][0]);
#pragma unroll
                    for (int v = 0; v < 8; ++v) x[v] = hp[v] + rr8[v] + bres[v];  // hraw[it][0..1] contiguous
                    *reinterpret_cast<float4*>(h + (long)t * WG_C + gch) = make_float4(x[0], x[1], x[2], x[3]);
                    *reinterpret_cast<float4*>(h + (long)t * WG_C + gch + 4) = make_float4(x[4], x[5], x[6], x[7]);
                } else {
                    const __half* hp = reinterpret_cast<const __half*>(&hraw[it][0]);
#pragma unroll
                    for (int v = 0; v < 8; ++v) x[v] = __half2float(hp[v]) + rr8[v] + bres[v];
                }
                uint4 xv;
                __half* px = reinterpret_cast<__half*>(&xv);
#pragma unroll
                for (int v = 0; v < 8; ++v) px[v] = __float2half_rn(x[v]);
                const uint4 zv = make_uint4(0, 0, 0, 0);
                const int s0 = rbp[2 * r], s1 = rbp[2 * r + 1];
                for (int jj = 0; jj < kernel_size; ++jj) {
                    const int rw = t - (jj - half) * d;
                    if (rw >= s0 && rw < s1)
                        *reinterpret_cast<uint4*>(XS + (long)rw * ld + (long)jj * WG_C + gch) = xv;
                    const int src = t + (jj - half) * d;
                    if (src < s0 || src >= s1)
                        *reinterpret_cast<uint4*>(XS + (long)t * ld + (long)jj * WG_C + gch) = zv;
                }
            }
        }
        // ---- skip sums -> acc
        if (tid < WG_BM * 8) {
            const int r = tid >> 3, o = tid & 7;
            const int t = t0 + r;
            if (o < n_out && t < n_rows) {
                float sum = 0.0f;
#pragma unroll
                for (int w = 0; w < WGF_SKW; ++w) sum += Ss[w * WG_BM * 8 + tid];
                acc[(long)t * WG_G + o] = accv + sum;
            }
        }
        // no third barrier: the next tile writes As/rb[other parity] before its barrier and Rs/Ss only
        // after it, by which time every thread has finished this epilogue.
    }
    asm volatile("cp.async.wait_all;\n" ::);  // a block with no tile still retires its copies
    if (!w_ready) __syncthreads();                // the other group's first-tile barrier
}
#endif  // WGF_OK
