// WaveGlow's per-layer GEMM with the gate in its epilogue, on Hopper's tensor-core path (sm_90a:
// TMA loads, wgmma, one producer warp and two consumer warpgroups).
//
//   acts[t][j] = tanh(Y[t][j] + b[j]) * sigmoid(Y[t][C + j] + b[C + j]),  Y[t] = W XS[t][0:K]
//
// XS is waveglow.cu's GEMM operand ([taps of h | cond], row-major, K = 3C + NMEL*G) and W the
// layer's [in_layer taps | cond_layer] weights. cuBLAS computes Y (2C fp16 per row) into memory and
// wg_layer_fused reads it back to gate it; here Y never leaves the registers: the weights' rows are
// interleaved on the host (row 2j = tanh channel j, row 2j+1 = sigmoid channel j), so each
// thread's accumulator pair (even, odd column) is one channel's two pre-activations, and only the
// C acts (half of Y's bytes) are written. wg_layer_fused (built with WG_ACTS_IN) then starts from
// them.
//
// Tiles: 128 rows x 256 interleaved columns (128 channels); tile = row tile * 2C/256 + column
// tile, so the column tiles of one row tile run side by side and read its XS rows from L2 once.
// Persistent: one block per SM takes every grid-th tile. K in steps of 64 (one 128-byte swizzle
// row of fp16) through GG_STAGES shared-memory stages, a ring that runs on across tiles: the
// producer thread waits for a stage to be empty, then TMA-loads A (128 x 64 of XS) and B (256 x 64
// of W) into it, completing on the stage's "full" mbarrier; each consumer warpgroup waits for
// "full", issues 4 wgmma m64n256k16 on its 64 rows, and releases the stage it finished one step
// earlier (wgmma.wait_group 1 keeps one step of MMAs in flight). So the producer fills the next
// tile's first stages during this tile's epilogue: gate in registers (tanh.approx, as wg_layer_fused),
// the fp16 acts staged in shared memory, written as 16-byte row segments.
//
// GG_CLUSTER 2: blocks in clusters of two that take two row tiles of the same column tile and
// share its weight tile: each block TMA-loads its own A and half of B multicast into both (still
// 48 KB per block per step, now 32 KB of it from L2), and a stage is empty only once the consumers
// of both blocks released it. Measured no faster than blocks alone (docs/gpu-notes.md, session 9):
// L2 bandwidth is not what limits this kernel; kept for the layer kernel that will need clusters.
//
// GG_FOLD (the cond folding, docs/gpu-notes.md session 10): a group step t = P q + r (P = 256/G
// phases per mel frame) takes its cond input from mel frames q-3 .. q through the upsampler's phase-r
// rows, so cond_layer . upsample folds into one matrix per phase, Wf[r] = W_cond U_r (2C x 4 n_mel,
// made on the device when the engine loads; its bias column goes into a per-phase gate bias).
// K is then [3C taps of XS | 4 n_mel of the mel's im2col] = 768 + 320 instead of 768 + 640 (-23 % of
// the layer GEMM's MACs at NVIDIA's sizes), and the upsample GEMM and XS's cond columns go away. The
// price: a tile must hold one phase, so tiles are 128 frames q of one phase r (XS read as a 3-D
// tensor [q][r][K], row t = P q + r), and Wf costs 10.5 MB per layer (1 GB at 256 channels).
//
// XS rows past the tensor map's rows are zero-filled by TMA, and their acts are not stored.
//
// Built only for sm_90a (wgmma, setmaxnreg): on any other target this file compiles to nothing, and
// WaveGlowGpu refuses gemm_gate there (tts_desktop/engine/waveglow.py, gemm_gate_supported). Opt-in:
// with cuBLAS + wg_layer_fused's own gate it ties at batch 32 and wins at batch 1.
#include "common.cuh"  // tanh_approx, the SFU tanh wg_layer_fused gates with too
#include "hopper.cuh"  // mbarriers, TMA, wgmma

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define GG_BM 128
#define GG_BN 256
#define GG_BK 64
#ifndef GG_STAGES
#define GG_STAGES 4
#endif
#define GG_THREADS 384
#ifndef GG_CLUSTER
#define GG_CLUSTER 1
#endif
#define GG_A_BYTES (GG_BM * GG_BK * 2)
#define GG_B_BYTES (GG_BN * GG_BK * 2)
#define GG_STAGE_BYTES (GG_A_BYTES + GG_B_BYTES)
#define GG_LDS (GG_BN / 2 + 8)  // staging row stride (halves): 8 rows of a warp's stores hit distinct banks

extern "C" __global__ void __launch_bounds__(GG_THREADS, 1)
wg_gemm_gate(const __grid_constant__ GgTensorMap map_a, const __grid_constant__ GgTensorMap map_b, int n_rows,
             int k_total, int c, const float* __restrict__ gate_bias, __half* __restrict__ acts
#ifdef GG_FOLD
             // map_a: XS's taps as [frames][phases][3C]; map_m: the mel im2col [frames][4 n_mel];
             // map_f: the folded weights [phases * 2C][4 n_mel]; n_rows counts frames, k_total the
             // taps' K; gate_bias is [phases][2C]
             , const __grid_constant__ GgTensorMap map_m, const __grid_constant__ GgTensorMap map_f, int k_mel,
             int phases
#endif
) {
#if defined(GG_FOLD) && GG_CLUSTER > 1
#error "GG_FOLD runs without clusters"
#endif
    // no static shared memory: the dynamic block starts at the window's base, 1024-byte aligned as
    // TMA's 128-byte swizzle needs (checked below)
    extern __shared__ __align__(1024) unsigned char smem[];
    __half* staging = reinterpret_cast<__half*>(smem + GG_STAGES * GG_STAGE_BYTES);  // [2][64][GG_LDS]
    unsigned long long* bars = reinterpret_cast<unsigned long long*>(staging + 2 * 64 * GG_LDS);
    const unsigned full0 = gg_smem(bars), empty0 = gg_smem(bars + GG_STAGES);
    const int n_col_tiles = 2 * c / GG_BN;
    // work unit: GG_CLUSTER row tiles (one per block of a cluster) x one column tile
    const int n_row_tiles = (n_rows + GG_CLUSTER * GG_BM - 1) / (GG_CLUSTER * GG_BM);
#ifdef GG_FOLD
    // unit = (phase, frame tile, column tile), phase-major so that the blocks running together share
    // few phases' folded weights in L2
    const int n_units = phases * n_row_tiles * n_col_tiles;
    const int nk_taps = k_total / GG_BK, nk = nk_taps + (k_mel + GG_BK - 1) / GG_BK;
#else
    const int n_units = n_row_tiles * n_col_tiles;
    const int nk = k_total / GG_BK;
#endif
    const int unit0 = blockIdx.x / GG_CLUSTER, unit_step = gridDim.x / GG_CLUSTER;
    const int rank = GG_CLUSTER > 1 ? (int)gg_cluster_rank() : 0;
    const int wg = threadIdx.x / 128;

    if (threadIdx.x == 0) {
        if (gg_smem(smem) & 1023) __trap();
        for (int s = 0; s < GG_STAGES; ++s) {
            gg_bar_init(full0 + 8 * s, 1);
            gg_bar_init(empty0 + 8 * s, 8 * GG_CLUSTER);  // one arrive per consumer warp of each block
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    if (GG_CLUSTER > 1)
        gg_cluster_sync();  // the peer's copies and arrivals target this block's barriers only once they exist
    else
        __syncthreads();

    // Persistent: block b takes tiles b, b + grid, ... (tile = row tile * n_col_tiles + column tile).
    // The stage ring runs on across tiles, so the producer loads the next tile's first stages while
    // the consumers run this tile's epilogue.
    if (wg == 0) {
        // producer: one thread issues every copy; the rest of the warpgroup gives its registers away
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
        if (threadIdx.x == 0) {
            int it = 0;
            for (int u = unit0; u < n_units; u += unit_step) {
                const int m0 = ((u / n_col_tiles) % n_row_tiles * GG_CLUSTER + rank) * GG_BM, n0 = (u % n_col_tiles) * GG_BN;
                for (int k = 0; k < nk; ++k, ++it) {
                    const int s = it % GG_STAGES, use = it / GG_STAGES;
                    if (use > 0) gg_bar_wait(empty0 + 8 * s, (use - 1) & 1);
                    const unsigned a = gg_smem(smem + s * GG_STAGE_BYTES);
                    gg_bar_expect(full0 + 8 * s, GG_STAGE_BYTES);
#ifdef GG_FOLD
                    const int ph = u / (n_col_tiles * n_row_tiles);
                    if (k < nk_taps) {
                        gg_tma_load_3d(a, &map_a, k * GG_BK, ph, m0, full0 + 8 * s);
                        gg_tma_load(a + GG_A_BYTES, &map_b, k * GG_BK, n0, full0 + 8 * s);
                    } else {
                        gg_tma_load(a, &map_m, (k - nk_taps) * GG_BK, m0, full0 + 8 * s);
                        gg_tma_load(a + GG_A_BYTES, &map_f, (k - nk_taps) * GG_BK, ph * 2 * c + n0, full0 + 8 * s);
                    }
#elif GG_CLUSTER > 1
                    gg_tma_load(a, &map_a, k * GG_BK, m0, full0 + 8 * s);
                    gg_tma_load_multicast(a + GG_A_BYTES + rank * (GG_B_BYTES / GG_CLUSTER), &map_b, k * GG_BK,
                                          n0 + rank * (GG_BN / GG_CLUSTER), full0 + 8 * s,
                                          (unsigned short)((1 << GG_CLUSTER) - 1));
#else
                    gg_tma_load(a, &map_a, k * GG_BK, m0, full0 + 8 * s);
                    gg_tma_load(a + GG_A_BYTES, &map_b, k * GG_BK, n0, full0 + 8 * s);
#endif
                }
            }
        }
    } else {
        asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
        const int cw = wg - 1;  // consumer warpgroup: rows [64 cw, 64 cw + 64) of each tile
        const int warp = (threadIdx.x / 32) % 4, lane = threadIdx.x % 32, tid = threadIdx.x % 128;
        __half* st = staging + cw * 64 * GG_LDS;
        const int r = warp * 16 + lane / 4;  // accumulator rows r and r + 8 of this warpgroup's 64
        // a stage read by this warp may be refilled: tell the producer of each block of the cluster
        auto release = [&](int step) {
            const unsigned bar = empty0 + 8 * (step % GG_STAGES);
            if (GG_CLUSTER == 1) {
                if (lane == 0) gg_bar_arrive(bar);
            } else if (lane < GG_CLUSTER) {
                gg_bar_arrive_remote(bar, lane);
            }
        };
        int it = 0;
        for (int u = unit0; u < n_units; u += unit_step) {
            const int m0 = ((u / n_col_tiles) % n_row_tiles * GG_CLUSTER + rank) * GG_BM, nt = u % n_col_tiles;
#ifdef GG_FOLD
            const int ph = u / (n_col_tiles * n_row_tiles);
            const float* bias = gate_bias + ph * 2 * c;  // the phase's bias (its cond bias folded in)
#else
            const int ph = 0;
            const float* bias = gate_bias;
#endif
            float d[128];
#pragma unroll
            for (int i = 0; i < 128; ++i) d[i] = 0.0f;
            for (int k = 0; k < nk; ++k, ++it) {
                const int s = it % GG_STAGES;
                gg_bar_wait(full0 + 8 * s, (it / GG_STAGES) & 1);
                const unsigned a = gg_smem(smem + s * GG_STAGE_BYTES) + cw * 64 * GG_BK * 2;
                const unsigned b = gg_smem(smem + s * GG_STAGE_BYTES + GG_A_BYTES);
                asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
                for (int kk = 0; kk < GG_BK / 16; ++kk)
                    gg_wgmma_m64n256k16(d, gg_desc(a + kk * 32), gg_desc(b + kk * 32));
                asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
                // the previous step's MMAs are done: its stage may be refilled
                asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
                if (k > 0) release(it - 1);
            }
            asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
            release(it - 1);

            // epilogue: gate in registers -> fp16 acts staged in shared memory -> 16-byte stores
            const float* bt = bias + nt * (GG_BN / 2);
            const float* bs = bias + c + nt * (GG_BN / 2);
#pragma unroll
            for (int q = 0; q < 32; ++q) {
                const int j = 4 * q + lane % 4;  // channel within the tile: columns 2j (tanh), 2j + 1 (sigmoid)
                const float b0 = __ldg(bt + j), b1 = __ldg(bs + j);
                const float g0 = tanh_approx(d[4 * q] + b0) * fmaf(0.5f, tanh_approx(0.5f * (d[4 * q + 1] + b1)), 0.5f);
                const float g1 = tanh_approx(d[4 * q + 2] + b0) * fmaf(0.5f, tanh_approx(0.5f * (d[4 * q + 3] + b1)), 0.5f);
                st[r * GG_LDS + j] = __float2half_rn(g0);
                st[(r + 8) * GG_LDS + j] = __float2half_rn(g1);
            }
            asm volatile("bar.sync %0, 128;\n" ::"r"(1 + cw) : "memory");
            // 64 rows x 128 channels (256 bytes per row), 16 threads per row
#pragma unroll
            for (int rr = 0; rr < 8; ++rr) {
                const int row = rr * 8 + tid / 16, seg = tid % 16;
                const int q = m0 + cw * 64 + row;
#ifdef GG_FOLD
                const long t = (long)q * phases + ph;  // frame q, phase ph -> group step
#else
                const long t = q + ph;
#endif
                if (q < n_rows)
                    *reinterpret_cast<uint4*>(acts + t * c + nt * (GG_BN / 2) + seg * 8) =
                        *reinterpret_cast<const uint4*>(st + row * GG_LDS + seg * 8);
            }
            asm volatile("bar.sync %0, 128;\n" ::"r"(1 + cw) : "memory");  // staging free for the next tile
        }
    }
    // neither block of a cluster may exit while its peer can still write into its shared memory
    if (GG_CLUSTER > 1) gg_cluster_sync();
}
#endif  // __CUDA_ARCH_FEAT_SM90_ALL
