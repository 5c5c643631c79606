// One whole WaveGlow WN layer in one kernel, on Hopper's tensor-core path (sm_90a), for the FP16
// engine with the cond folded (wg_gemm_gate.cu's GG_FOLD; docs/gpu-notes.md, session 11):
//
//   acts[t]  = gate(W_taps XS[t] + Wf[r] cols[q] + bf[r])      t = P q + r: frame q, phase r
//   acc[t]  += (W_end W_skip) acts[t]                          the skip share, 2 n_half <= 8 outputs
//   h'[t]    = h[t] + W_res acts[t] + b_res                    not for the flow's last layer
//   XS'[t']  = the next layer's K dilated taps of h'           (zero where a tap leaves t's item)
//
// wg_gemm_gate + wg_layer_fused do the same in two kernels, the acts going through memory in
// between and the res GEMM on mma.sync; here the acts stay in shared memory and both small GEMMs
// run on wgmma from there. h lives as the fp16 centre tap of XS, as in the fused FP16 path. The
// other tiles of this layer still read XS's taps while a tile writes the next layer's, so the
// next taps go to a second buffer XS' (the caller alternates the two).
//
// Block: 384 threads, one per SM, persistent over units (phase r, tile of 128 frames), phase-major.
// Warpgroup 0 is the producer (one thread issues every TMA copy), warpgroups 1 and 2 consume,
// 64 of the tile's 128 rows each, through a ring of GL_STAGES shared-memory stages that runs on
// across units. A unit is, in ring order:
//   - 2C/256 passes of wg_gemm_gate's folded GEMM (A: 128 x 64 of XS's taps through a 3-D map, then
//     of the mel im2col; B: 256 x 64 of the interleaved weights), each gated in registers into the
//     unit's acts tile in shared memory (128 rows x C, fp16, laid out as TMA's 128-byte swizzle would
//     write it, so that wgmma reads it as an A operand);
//   - the skip product: wgmma m64n16 with B = [hi | lo] fp16 halves of W_end W_skip (resident in
//     shared memory), so the skip weights keep ~fp32 precision as in wg_layer_fused;
//   - with a res: C/64 stages of W_res (B: C x 64) against the acts (wgmma m64nC), then the
//     epilogue: h rows (XS's centre tap) staged through this warpgroup's acts rows, h += res + b_res
//     in the accumulators' layout, and 16-byte row segments scattered into XS' as scatter_taps does.
// Frames past n_frames are zero-filled by TMA; their rows are computed but neither stored nor
// accumulated.
//
// Shared memory: GL_STAGES x 48 KB + acts (C x 256 B) + skip weights (C x 32 B) + barriers:
// 216 KB at C = 256 (3 stages), 179 KB at C = 128.
//
// STATUS: written in session 11 without a GPU (none could be started); compiled by NVRTC for
// sm_90a, not yet run. Opt-in only (WaveGlowGpu(layer_kernel=True)); tests/gpu/test_waveglow_gpu.py
// checks it against the two-kernel path and the NumPy reference once a GPU runs it.
#include "common.cuh"  // tanh_approx, find_item
#include "hopper.cuh"  // mbarriers, TMA, wgmma

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#ifndef GL_C
#define GL_C 256
#endif
#if GL_C != 128 && GL_C != 256
#error "wg_layer handles WN widths of 128 and 256 channels"
#endif
#define GL_BM 128
#define GL_BN 256
#define GL_BK 64
#ifndef GL_STAGES
#define GL_STAGES 3
#endif
#define GL_THREADS 384
#define GL_A_BYTES (GL_BM * GL_BK * 2)
#define GL_B_BYTES (GL_BN * GL_BK * 2)
#define GL_STAGE_BYTES (GL_A_BYTES + GL_B_BYTES)
#define GL_ACTS_BYTES (GL_BM * GL_C * 2)
#define GL_SKIP_BYTES (16 * GL_C * 2)
#define GL_NCT (2 * GL_C / GL_BN)   // GEMM passes (column tiles of 128 channels) per unit
#define GL_NRES (GL_C / GL_BK)      // res GEMM K steps
#define GL_RES_BYTES (GL_C * GL_BK * 2)

// gg_bar_wait with a watchdog: this kernel was written without a GPU, and a producer and consumers
// that disagree on the ring's steps would otherwise hang the device call; ~10 s of waiting on one
// barrier traps instead (a launch error the test reports).
__device__ __forceinline__ void gl_bar_wait(unsigned bar, unsigned parity) {
    const long long start = clock64();
    unsigned done = 0;
    while (!done) {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
        if (!done && clock64() - start > (1ll << 34)) __trap();
    }
}

__device__ __forceinline__ void gl_fence_async_smem() {
    // generic-proxy writes to shared memory become visible to wgmma (the async proxy)
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

extern "C" __global__ void __launch_bounds__(GL_THREADS, 1)
wg_layer(const __grid_constant__ GgTensorMap map_a,  // XS's taps [frames][phases][K C]
         const __grid_constant__ GgTensorMap map_b,  // taps weights, rows interleaved [2C][K C]
         const __grid_constant__ GgTensorMap map_m,  // mel im2col [frames][4 n_mel]
         const __grid_constant__ GgTensorMap map_f,  // folded weights [phases 2C][4 n_mel]
         const __grid_constant__ GgTensorMap map_r,  // W_res [C][C] (any map when !has_res)
         int n_frames, int k_taps, int k_mel, int phases,
         const float* __restrict__ gate_bias,        // [phases][2C]: tanh channels, then sigmoid ones
         const __half* __restrict__ w_skip,          // [16][C]: hi rows 0..7, lo rows 8..15
         int n_out, float* __restrict__ acc, int g,  // acc [T][g] += skip share (o < n_out)
         const float* __restrict__ b_res, int has_res,
         const __half* __restrict__ xs, __half* __restrict__ xs_next, int ld, int kernel_size, int d_next,
         const int* __restrict__ off, int n_items) {
    extern __shared__ __align__(1024) unsigned char smem[];
    unsigned char* acts = smem + GL_STAGES * GL_STAGE_BYTES;   // [C/64][128 rows][128 B], swizzled
    unsigned char* skip = acts + GL_ACTS_BYTES;                 // [C/64][16 rows][128 B], swizzled
    unsigned long long* bars = reinterpret_cast<unsigned long long*>(skip + GL_SKIP_BYTES);
    const unsigned full0 = gg_smem(bars), empty0 = gg_smem(bars + GL_STAGES);
    const int n_row_tiles = (n_frames + GL_BM - 1) / GL_BM;
    const int n_units = phases * n_row_tiles;
    const int nk_taps = k_taps / GL_BK, nk = nk_taps + (k_mel + GL_BK - 1) / GL_BK;
    const int wg = threadIdx.x / 128;

    if (threadIdx.x == 0) {
        if (gg_smem(smem) & 1023) __trap();
        for (int s = 0; s < GL_STAGES; ++s) {
            gg_bar_init(full0 + 8 * s, 1);
            gg_bar_init(empty0 + 8 * s, 8);  // one arrive per consumer warp
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) {
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
        if (threadIdx.x == 0) {
            int it = 0;
            auto next_stage = [&](unsigned bytes) {
                const int s = it % GL_STAGES, use = it / GL_STAGES;
                if (use > 0) gl_bar_wait(empty0 + 8 * s, (use - 1) & 1);
                gg_bar_expect(full0 + 8 * s, bytes);
                ++it;
                return s;
            };
            for (int u = blockIdx.x; u < n_units; u += gridDim.x) {
                const int ph = u / n_row_tiles, m0 = (u % n_row_tiles) * GL_BM;
                for (int nt = 0; nt < GL_NCT; ++nt) {
                    const int n0 = nt * GL_BN;
                    for (int k = 0; k < nk; ++k) {
                        const int s = next_stage(GL_STAGE_BYTES);
                        const unsigned a = gg_smem(smem + s * GL_STAGE_BYTES), bar = full0 + 8 * s;
                        if (k < nk_taps) {
                            gg_tma_load_3d(a, &map_a, k * GL_BK, ph, m0, bar);
                            gg_tma_load(a + GL_A_BYTES, &map_b, k * GL_BK, n0, bar);
                        } else {
                            gg_tma_load(a, &map_m, (k - nk_taps) * GL_BK, m0, bar);
                            gg_tma_load(a + GL_A_BYTES, &map_f, (k - nk_taps) * GL_BK, ph * 2 * GL_C + n0, bar);
                        }
                    }
                }
                if (has_res)
                    for (int kr = 0; kr < GL_NRES; ++kr) {
                        const int s = next_stage(GL_RES_BYTES);
                        gg_tma_load(gg_smem(smem + s * GL_STAGE_BYTES) + GL_A_BYTES, &map_r, kr * GL_BK, 0,
                                    full0 + 8 * s);
                    }
            }
        }
        return;
    }

    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    const int cw = wg - 1;  // rows [64 cw, 64 cw + 64) of each unit
    const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32, tid = threadIdx.x % 128;
    const int r = warp * 16 + lane / 4;  // accumulator rows r and r + 8 of this warpgroup's 64
    const int l4 = lane % 4;
    const int ctr = kernel_size / 2;    // the centre tap: h itself
    auto wg_sync = [&]() { asm volatile("bar.sync %0, 128;\n" ::"r"(1 + cw) : "memory"); };
    auto release = [&](int step) {
        if (lane == 0) gg_bar_arrive(empty0 + 8 * (step % GL_STAGES));
    };
    auto acts_at = [&](int row, int k) { return acts + gg_swizzled(GL_BM, cw * 64 + row, k); };

    // the skip weights, once: rows as wgmma's B operand wants them (16 rows x C, swizzled)
    for (int i = threadIdx.x - 128; i < 16 * GL_C / 8; i += 256) {
        const int row = i / (GL_C / 8), k = (i % (GL_C / 8)) * 8;
        *reinterpret_cast<uint4*>(skip + gg_swizzled(16, row, k)) = reinterpret_cast<const uint4*>(w_skip)[i];
    }
    gl_fence_async_smem();
    asm volatile("bar.sync 3, 256;\n" ::: "memory");

    const unsigned acts_a = gg_smem(acts) + cw * 64 * 128, skip_b = gg_smem(skip);
    int it = 0;
    for (int u = blockIdx.x; u < n_units; u += gridDim.x) {
        const int ph = u / n_row_tiles, m0 = (u % n_row_tiles) * GL_BM;
        const float* bias = gate_bias + ph * 2 * GL_C;
        float d[128];

        // ---- the gated acts, 128 channels per pass, into the acts tile. The K loop is wg_gemm_gate's
        // (kept apart: that one's ring serves clusters too, and these waits carry the watchdog).
        for (int nt = 0; nt < GL_NCT; ++nt) {
#pragma unroll
            for (int i = 0; i < 128; ++i) d[i] = 0.0f;
            for (int k = 0; k < nk; ++k, ++it) {
                const int s = it % GL_STAGES;
                gl_bar_wait(full0 + 8 * s, (it / GL_STAGES) & 1);
                const unsigned a = gg_smem(smem + s * GL_STAGE_BYTES) + cw * 64 * GL_BK * 2;
                const unsigned b = gg_smem(smem + s * GL_STAGE_BYTES + GL_A_BYTES);
                asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
                for (int kk = 0; kk < GL_BK / 16; ++kk)
                    gg_wgmma_m64n256k16(d, gg_desc(a + kk * 32), gg_desc(b + kk * 32));
                asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
                asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
                if (k > 0) release(it - 1);
            }
            asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
            release(it - 1);
            const float* bt = bias + nt * (GL_BN / 2);
            const float* bs = bias + GL_C + nt * (GL_BN / 2);
#pragma unroll
            for (int q = 0; q < 32; ++q) {
                const int j = 4 * q + l4;  // channel within the pass: columns 2j (tanh), 2j + 1 (sigmoid)
                const float b0 = __ldg(bt + j), b1 = __ldg(bs + j);
                const float g0 = tanh_approx(d[4 * q] + b0) * fmaf(0.5f, tanh_approx(0.5f * (d[4 * q + 1] + b1)), 0.5f);
                const float g1 = tanh_approx(d[4 * q + 2] + b0) * fmaf(0.5f, tanh_approx(0.5f * (d[4 * q + 3] + b1)), 0.5f);
                *reinterpret_cast<__half*>(acts_at(r, nt * (GL_BN / 2) + j)) = __float2half_rn(g0);
                *reinterpret_cast<__half*>(acts_at(r + 8, nt * (GL_BN / 2) + j)) = __float2half_rn(g1);
            }
        }
        gl_fence_async_smem();
        wg_sync();  // the warpgroup's acts rows are complete

        // ---- skip share and res, both from the acts tile
        float sk[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) sk[i] = 0.0f;
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int kb = 0; kb < GL_C / 64; ++kb)
#pragma unroll
            for (int kk = 0; kk < 4; ++kk)
                gg_wgmma_m64n16k16(sk, gg_desc(acts_a + kb * GL_BM * 128 + kk * 32),
                                   gg_desc(skip_b + kb * 16 * 128 + kk * 32));
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#if GL_C == 256
#define GL_RES d
#else
        float e[64];
#define GL_RES e
#endif
        if (has_res) {
#pragma unroll
            for (int i = 0; i < GL_C / 2; ++i) GL_RES[i] = 0.0f;
            for (int kr = 0; kr < GL_NRES; ++kr, ++it) {
                const int s = it % GL_STAGES;
                gl_bar_wait(full0 + 8 * s, (it / GL_STAGES) & 1);
                const unsigned b = gg_smem(smem + s * GL_STAGE_BYTES + GL_A_BYTES);
                asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
                for (int kk = 0; kk < 4; ++kk) {
#if GL_C == 256
                    gg_wgmma_m64n256k16(d, gg_desc(acts_a + kr * GL_BM * 128 + kk * 32), gg_desc(b + kk * 32));
#else
                    gg_wgmma_m64n128k16(e, gg_desc(acts_a + kr * GL_BM * 128 + kk * 32), gg_desc(b + kk * 32));
#endif
                }
                asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
                asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
                if (kr > 0) release(it - 1);
            }
            asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
            release(it - 1);
        } else {
            asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        }

        // ---- skip share -> acc: columns o (hi) and 8 + o (lo) of the m64n16 accumulators
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {
            const int q = m0 + cw * 64 + r + 8 * hr;
            if (q >= n_frames) continue;
            const long t = (long)q * phases + ph;
#pragma unroll
            for (int v = 0; v < 2; ++v) {
                const int o = 2 * l4 + v;
                if (o < n_out) acc[t * g + o] += sk[2 * hr + v] + sk[4 + 2 * hr + v];
            }
        }
        if (!has_res) {
            wg_sync();  // every warp's skip MMAs have read the acts before the next unit's gate rewrites them
            continue;
        }

        // ---- h += res + b_res, staged through this warpgroup's acts rows (their MMAs are done)
        wg_sync();
        for (int i = tid; i < 64 * (GL_C / 8); i += 128) {
            const int row = i / (GL_C / 8), k = (i % (GL_C / 8)) * 8;
            const int q = m0 + cw * 64 + row;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (q < n_frames) v = *reinterpret_cast<const uint4*>(xs + ((long)q * phases + ph) * ld + ctr * GL_C + k);
            *reinterpret_cast<uint4*>(acts_at(row, k)) = v;
        }
        wg_sync();
#pragma unroll
        for (int i = 0; i < GL_C / 8; ++i) {
            const int n = 8 * i + 2 * l4;
            const float b0 = __ldg(b_res + n), b1 = __ldg(b_res + n + 1);
#pragma unroll
            for (int hr = 0; hr < 2; ++hr) {
                __half2* p = reinterpret_cast<__half2*>(acts_at(r + 8 * hr, n));
                const float2 h = __half22float2(*p);
                *p = __floats2half2_rn(h.x + GL_RES[4 * i + 2 * hr] + b0, h.y + GL_RES[4 * i + 2 * hr + 1] + b1);
            }
        }
        wg_sync();
        // rows -> the next layer's taps in XS' (16-byte segments; as scatter_taps: every element of
        // the item's rows written once, zero where a tap reads outside the item)
        for (int i = tid; i < 64 * (GL_C / 8); i += 128) {
            const int row = i / (GL_C / 8), k = (i % (GL_C / 8)) * 8;
            const int q = m0 + cw * 64 + row;
            if (q >= n_frames) continue;
            const int t = q * phases + ph;
            const int b = find_item(off, n_items, t);
            const int s0 = __ldg(off + b), s1 = __ldg(off + b + 1);
            const uint4 v = *reinterpret_cast<const uint4*>(acts_at(row, k));
            const uint4 z = make_uint4(0, 0, 0, 0);
            for (int j = 0; j < kernel_size; ++j) {
                const int rw = t - (j - ctr) * d_next;  // the row whose tap j reads h'[t]
                if (rw >= s0 && rw < s1) *reinterpret_cast<uint4*>(xs_next + (long)rw * ld + j * GL_C + k) = v;
                const int src = t + (j - ctr) * d_next;  // what row t's tap j reads
                if (src < s0 || src >= s1) *reinterpret_cast<uint4*>(xs_next + (long)t * ld + j * GL_C + k) = z;
            }
        }
        wg_sync();  // the acts rows are free for the next unit's gate
#undef GL_RES
    }
}
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
