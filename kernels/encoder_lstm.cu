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
//
// Within a step the items are independent, and one item is a chain of dependent latencies (h from
// L2, the FMAs, the cross-lane sums, the gate math): a warp takes two items per pass so their
// chains overlap (a batch of 32 paid ~32 x batch 1's step before). The 16 row sums of an item use
// a transposing reduction: each exchange halves the rows a lane keeps, so 16 + 4 shuffles replace
// the 16 x 5 of reducing every row across all lanes; lanes 2r and 2r+1 end with row r's sum.
// Compile-time: LSTM_H (hidden size per direction, a multiple of 32 and of 16).
#ifndef LSTM_H
#define LSTM_H 256
#endif
#define KPL (LSTM_H / 32)

__device__ __forceinline__ float sig(float x) { return 1.0f / (1.0f + expf(-x)); }

// One exchange of the transposing reduction over 2N rows: the lanes whose bit 2N is set keep the
// upper N rows (moved down to [0, N)) and send the lower N, their partners (lane ^ 2N) the reverse.
template <int N>
__device__ __forceinline__ void halve(float (&acc)[16], int lane) {
    const bool upper = lane & (2 * N);
#pragma unroll
    for (int r = 0; r < N; ++r) {
        const float keep = upper ? acc[r + N] : acc[r];
        const float give = upper ? acc[r] : acc[r + N];
        acc[r] = keep + __shfl_xor_sync(0xffffffffu, give, 2 * N);
    }
}

// One step of N items (all running at this step): items[i], time t[i] within the item.
template <int N>
__device__ __forceinline__ void lstm_items(const float (&w)[16][KPL], const int (&items)[2], const int (&t)[2],
                                           const float* __restrict__ G, const float* __restrict__ bias,
                                           const int* __restrict__ off, int n_items, int dir, int u0, int lane,
                                           int cur, float* __restrict__ hbuf, float* __restrict__ cbuf,
                                           float* __restrict__ out, int t_pad) {
    const int H = LSTM_H;
    float hv[N][KPL];
#pragma unroll
    for (int i = 0; i < N; ++i) {
        const float* hp = hbuf + (((long)cur * 2 + dir) * n_items + items[i]) * H + lane * KPL;
#pragma unroll
        for (int k = 0; k < KPL; ++k) hv[i][k] = __ldcg(hp + k);  // L2: written by other blocks
    }
    // this lane's partial sums over its KPL columns, 16 rows per item (row r = gate r/4, unit u0 + r%4)
    float acc[N][16];
#pragma unroll
    for (int i = 0; i < N; ++i)
#pragma unroll
        for (int r = 0; r < 16; ++r) {
            float a = 0.0f;
#pragma unroll
            for (int k = 0; k < KPL; ++k) a += w[r][k] * hv[i][k];
            acc[i][r] = a;
        }
    // transposing reduction, then rows (lane >> 1) complete after the last exchange
#pragma unroll
    for (int i = 0; i < N; ++i) {
        halve<8>(acc[i], lane);
        halve<4>(acc[i], lane);
        halve<2>(acc[i], lane);
        halve<1>(acc[i], lane);
        acc[i][0] += __shfl_xor_sync(0xffffffffu, acc[i][0], 1);
    }
    const int row = lane >> 1, q_row = row >> 2, u_row = u0 + (row & 3);
    const int u = u0 + (lane & 3);
#pragma unroll
    for (int i = 0; i < N; ++i) {
        const long g_row = (long)(off[items[i]] + t[i]) * 8 * H + dir * 4 * H;
        const float z_row = acc[i][0] + G[g_row + q_row * H + u_row] + bias[dir * 4 * H + q_row * H + u_row];
        float z[4];  // gates i, f, g, o of unit u: rows 4q + (lane & 3), held by lanes 8q + 2 (lane & 3)
#pragma unroll
        for (int q = 0; q < 4; ++q) z[q] = __shfl_sync(0xffffffffu, z_row, 8 * q + 2 * (lane & 3));
        if (lane < 4) {
            const int b = items[i];
            float* cp = cbuf + ((long)dir * n_items + b) * H + u;
            const float c = sig(z[1]) * (*cp) + sig(z[0]) * tanhf(z[2]);
            const float h = sig(z[3]) * tanhf(c);
            *cp = c;
            hbuf[(((long)(cur ^ 1) * 2 + dir) * n_items + b) * H + u] = h;
            out[((long)b * t_pad + t[i]) * 2 * H + dir * H + u] = h;
        }
    }
}

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
        const int cur = s & 1;
        // the items still running at step s, two per pass (every test here is warp-uniform); a
        // held item waits in (hb, ht) for its partner
        int hb = -1, ht = 0;
        for (int b = 0; b < n_items; ++b) {
            const int len = off[b + 1] - off[b];
            if (s >= len) continue;
            const int tb = dir == 0 ? s : len - 1 - s;
            if (hb < 0) {
                hb = b, ht = tb;
                continue;
            }
            const int items[2] = {hb, b}, t[2] = {ht, tb};
            lstm_items<2>(w, items, t, G, bias, off, n_items, dir, u0, lane, cur, hbuf, cbuf, out, t_pad);
            hb = -1;
        }
        if (hb >= 0) {
            const int items[2] = {hb, 0}, t[2] = {ht, 0};
            lstm_items<1>(w, items, t, G, bias, off, n_items, dir, u0, lane, cur, hbuf, cbuf, out, t_pad);
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
