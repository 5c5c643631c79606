// The encoder's bidirectional LSTM recurrence (packed-sequence semantics: each item runs over its
// own length; the backward direction starts at the item's last token).
//
// The input projections of all steps come from one GEMM beforehand: G [T][8H] (fwd i,f,g,o | bwd
// i,f,g,o), rows laid out like the conv stack's (item b: rows [off[b], off[b+1])). Here only
// W_hh h_{t-1} remains per step. One persistent launch: each direction has H/16 blocks of 4 warps;
// a warp owns 4 hidden units (16 gate rows) and keeps those rows of W_hh in registers (lane l holds
// columns [l*KPL, (l+1)*KPL)), so W_hh is read from memory once per launch. After each step the
// blocks of a direction meet at a counter barrier; h is double-buffered so a step's writes never
// race with the previous step's reads. All 2*H/16 blocks must be resident at once (32 blocks for
// H = 256, far fewer than any sm_70+ GPU's SMs).
// Compile-time: LSTM_H (hidden size per direction, a multiple of 32 and of 16).
#ifndef LSTM_H
#define LSTM_H 256
#endif
#define KPL (LSTM_H / 32)

__device__ __forceinline__ float sig(float x) { return 1.0f / (1.0f + expf(-x)); }

extern "C" __global__ void __launch_bounds__(128, 1)
lstm_recurrence(const float* __restrict__ G, const float* __restrict__ bias,  // [T][8H], [2][4H]
                const float* __restrict__ whh,                                // [2][4H][H]
                const int* __restrict__ off, int n_items, int n_steps,
                float* __restrict__ hbuf,  // [2 (buffer)][2 (dir)][B][H], buffer 0 zeroed
                float* __restrict__ cbuf,  // [2][B][H] zeroed
                unsigned* __restrict__ bar,  // [2] zeroed
                float* __restrict__ out, int t_pad) {  // [B][t_pad][2H]
    const int nbd = gridDim.x / 2;
    const int dir = blockIdx.x / nbd, blk = blockIdx.x % nbd;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int u0 = (blk * 4 + warp) * 4;  // first of this warp's 4 hidden units
    const int H = LSTM_H;

    float w[16][KPL];  // row r = gate q (r / 4) of unit u0 + r % 4
#pragma unroll
    for (int r = 0; r < 16; ++r)
#pragma unroll
        for (int k = 0; k < KPL; ++k)
            w[r][k] = whh[((long)dir * 4 * H + (r / 4) * H + u0 + (r % 4)) * H + lane * KPL + k];

    for (int s = 0; s < n_steps; ++s) {
        const int cur = s & 1, nxt = cur ^ 1;
        for (int b = 0; b < n_items; ++b) {
            const int len = off[b + 1] - off[b];
            if (s >= len) continue;  // warp-uniform
            const int t = dir == 0 ? s : len - 1 - s;
            const float* hp = hbuf + (((long)cur * 2 + dir) * n_items + b) * H + lane * KPL;
            float hv[KPL];
#pragma unroll
            for (int k = 0; k < KPL; ++k) hv[k] = __ldcg(hp + k);  // L2: written by other blocks
            float acc[16];
#pragma unroll
            for (int r = 0; r < 16; ++r) {
                float a = 0.0f;
#pragma unroll
                for (int k = 0; k < KPL; ++k) a += w[r][k] * hv[k];
                acc[r] = a;
            }
#pragma unroll
            for (int r = 0; r < 16; ++r)
#pragma unroll
                for (int m = 16; m > 0; m >>= 1) acc[r] += __shfl_xor_sync(0xffffffffu, acc[r], m);
            if (lane < 4) {
                const int u = u0 + lane;
                float z[4];
#pragma unroll
                for (int q = 0; q < 4; ++q) {
                    float a = 0.0f;
#pragma unroll
                    for (int uu = 0; uu < 4; ++uu) if (uu == lane) a = acc[q * 4 + uu];  // no local-memory index
                    z[q] = a + G[(long)(off[b] + t) * 8 * H + dir * 4 * H + q * H + u] + bias[dir * 4 * H + q * H + u];
                }
                float* cp = cbuf + ((long)dir * n_items + b) * H + u;
                const float c = sig(z[1]) * (*cp) + sig(z[0]) * tanhf(z[2]);
                const float h = sig(z[3]) * tanhf(c);
                *cp = c;
                hbuf[(((long)nxt * 2 + dir) * n_items + b) * H + u] = h;
                out[((long)b * t_pad + t) * 2 * H + dir * H + u] = h;
            }
        }
        // barrier of this direction's blocks: h_t complete before anyone reads it
        __syncthreads();
        if (threadIdx.x == 0) {
            __threadfence();
            atomicAdd(bar + dir, 1u);
            const unsigned target = (unsigned)(s + 1) * nbd;
            while (*(volatile unsigned*)(bar + dir) < target) { }
            __threadfence();
        }
        __syncthreads();
    }
}
