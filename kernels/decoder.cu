// Tacotron2 inference decoder, one step = five kernels (NVIDIA's Decoder.decode + the prenet + the
// stop test), run over and over from a CUDA graph (a conditional WHILE node, or chunks of steps).
//
//   dec_lstm_att     attention LSTM: gates = W [prenet, context, h_att] + b; cell update fused
//   dec_att_energy   query projection + location conv/dense + tanh + v, per slice of ENERGY_AD
//                    attention dims: partial energies epart (ATT_DIM / ENERGY_AD, B, T_in)
//   dec_att_context  energies = sum of the partials; masked softmax over each item's true length,
//                    cumulative weights, context
//   dec_lstm_dec     decoder LSTM: gates = W [h_att, context, h_dec] + b; cell update fused
//   dec_project      mel frame + gate logit over many blocks; the last block of an item: outputs, stop
//                    test, then the prenet of the next input
//
// Weights are `wt`: __half in the FP16 engine (-DDEC_HALF=1), float in the FP32 engine; all
// arithmetic and every state vector is float. Sizes are compile-time (defaults: NVIDIA's LJSpeech
// model); batch size and T_in are run-time.
//
// Step bookkeeping lives on the device (ctl), so every launch of a step is identical and a graph can
// replay it: ctl[0] = step s, ctl[1] = done, ctl[2] = item ticket of dec_project. h_att and h_dec are
// ping-pong buffers [2][B][H]: step s reads half (s & 1) and writes half (s + 1) & 1. Every kernel
// returns at once when done is set, so a graph may hold more steps than are needed.
//
// At batch > 4 the FP16 engine runs the LSTMs as dec_lstm_att_tc / dec_lstm_dec_tc (tensor cores,
// sm_80+; see "batched LSTM" below).
//
// Every kernel may be launched with programmatic dependent launch (PDL): it loads its weights, then
// waits for the previous kernel (PDL_WAIT) before it touches any state.
#include <cuda_fp16.h>
// cudaGraphSetConditional; the header it pulls in warns (#1105) when included without cuda_runtime.h
#pragma nv_diag_suppress 1105
#include <cuda_device_runtime_api.h>
#pragma nv_diag_default 1105

#ifndef DEC_HALF
#define DEC_HALF 1
#endif
#ifndef N_MEL
#define N_MEL 80
#endif
#ifndef PRENET
#define PRENET 256
#endif
#ifndef ENC
#define ENC 512
#endif
#ifndef ATT_RNN
#define ATT_RNN 1024
#endif
#ifndef DEC_RNN
#define DEC_RNN 1024
#endif
#ifndef ATT_DIM
#define ATT_DIM 128
#endif
#ifndef LOC_F
#define LOC_F 32
#endif
#ifndef LOC_K
#define LOC_K 31
#endif
#ifndef LSTM_SPLIT
#define LSTM_SPLIT 2  // warps that share one LSTM unit's dot products (split over the input)
#endif
#ifndef ENERGY_AD
#define ENERGY_AD 8  // attention dims per dec_att_energy block (one query row per warp)
#endif
#ifndef PROJ_ROWS
#define PROJ_ROWS 8  // projection rows per dec_project block (one per warp)
#endif
#ifndef LSTM_MINB
#define LSTM_MINB 2  // LSTM blocks per SM the register budget must allow (128 registers): 256 blocks, one wave
#endif
#ifndef LSTM_PREFETCH
#define LSTM_PREFETCH 0  // 1: LSTM blocks prefetch their weight rows before the PDL wait (run 13: 0.5 us slower)
#endif

#if DEC_HALF
typedef __half wt;
#else
typedef float wt;
#endif

#define NT 256  // threads per block, every kernel
#define NEG_INF __int_as_float(0xff800000)
static_assert(PRENET % 8 == 0 && ENC % 8 == 0 && ATT_RNN % 8 == 0 && DEC_RNN % 8 == 0, "8-wide chunks");
static_assert(ATT_DIM % 32 == 0 && NT % ATT_DIM == 0, "ATT_DIM must be 32, 64, 128 or 256");
static_assert(N_MEL % 8 == 0, "N_MEL multiple of 8");
static_assert(8 % LSTM_SPLIT == 0, "LSTM_SPLIT divides the 8 warps of a block");
static_assert(ATT_DIM % ENERGY_AD == 0 && 32 % ENERGY_AD == 0, "ENERGY_AD divides ATT_DIM and 32");
static_assert(PROJ_ROWS == NT / 32, "one projection row per warp");

// Programmatic dependent launch (sm_90+): a kernel launched with programmatic stream serialization
// starts while the previous kernel runs; everything before PDL_WAIT may only read constant data
// (weights), everything after it sees the previous kernel's writes. PDL_LAUNCH lets the next kernel
// start its own prologue. Both are no-ops without PDL (and compile to nothing before sm_90).
#ifndef PDL_TRIGGER
#define PDL_TRIGGER 0  // 1: trigger the next kernel right after the wait (run 15: 11 us slower per step than 0,
                       // where the next kernel launches as this one's blocks exit)
#endif
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#define PDL_WAIT() asm volatile("griddepcontrol.wait;" ::: "memory")
#if PDL_TRIGGER
#define PDL_LAUNCH() asm volatile("griddepcontrol.launch_dependents;" ::: "memory")
#else
#define PDL_LAUNCH()
#endif
#else
#define PDL_WAIT()
#define PDL_LAUNCH()
#endif

// ------------------------------------------------------------------------------------- helpers

// 8 consecutive weights as float: one 16-byte load for halves, two for floats
__device__ __forceinline__ void load8(const __half* __restrict__ p, float (&o)[8]) {
    uint4 u = __ldg(reinterpret_cast<const uint4*>(p));
    const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        float2 f = __half22float2(h[i]);
        o[2 * i] = f.x;
        o[2 * i + 1] = f.y;
    }
}
__device__ __forceinline__ void load8(const float* __restrict__ p, float (&o)[8]) {
    float4 a = __ldg(reinterpret_cast<const float4*>(p));
    float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
    o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w;
    o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
}
// state vectors are written by earlier kernels of the same graph: plain loads, not __ldg's
// read-only path (which is only coherent for data constant during the kernel -- true here too, but
// keep the two kinds apart)
__device__ __forceinline__ void load8s(const float* p, float (&o)[8]) {
    float4 a = reinterpret_cast<const float4*>(p)[0];
    float4 b = reinterpret_cast<const float4*>(p)[1];
    o[0] = a.x; o[1] = a.y; o[2] = a.z; o[3] = a.w;
    o[4] = b.x; o[5] = b.y; o[6] = b.z; o[7] = b.w;
}
__device__ __forceinline__ float ldw(const __half* p) { return __half2float(p[0]); }
__device__ __forceinline__ float ldw(const float* p) { return p[0]; }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

// Philox4x32-10 (Salmon et al., SC'11): counter-based, so the dropout mask of (step, item, layer,
// unit) is a pure function of the seed -- no RNG state to carry between steps or launches.
__device__ __forceinline__ uint4 philox4x32_10(uint4 c, uint2 k) {
#pragma unroll
    for (int r = 0; r < 10; ++r) {
        const unsigned hi0 = __umulhi(0xD2511F53u, c.x), lo0 = 0xD2511F53u * c.x;
        const unsigned hi1 = __umulhi(0xCD9E8D57u, c.z), lo1 = 0xCD9E8D57u * c.z;
        c = make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
        k.x += 0x9E3779B9u;
        k.y += 0xBB67AE85u;
    }
    return c;
}
// keep unit j of prenet layer `layer` (p = 0.5): word j % 4 of Philox(counter = (j / 4, item, step,
// layer), key = seed); kept when its top bit is clear, i.e. a uniform [0, 1) draw < 0.5
__device__ __forceinline__ bool dropout_keep(uint2 seed, int step, int item, int layer, int j) {
    uint4 r = philox4x32_10(make_uint4((unsigned)j >> 2, (unsigned)item, (unsigned)step, (unsigned)layer), seed);
    const unsigned w = (j & 3) == 0 ? r.x : (j & 3) == 1 ? r.y : (j & 3) == 2 ? r.z : r.w;
    return (w >> 31) == 0u;
}

// Rows r0, r0 + rs, ..., r0 + (NR - 1) rs (those < nrows) of W (row length K, 8 | K) dotted with
// x in shared memory by one warp. NR independent accumulators: NR loads per lane are in flight at
// once instead of one row's latency after another (v1 did one row at a time: 29 us for dec_project).
template <int NR, int K>
__device__ __forceinline__ void warp_rows(const wt* __restrict__ W, const float* x, int r0, int rs, int nrows,
                                          float (&out)[NR]) {
    const int lane = threadIdx.x & 31;
    float acc[NR];
#pragma unroll
    for (int q = 0; q < NR; ++q) acc[q] = 0.f;
    for (int ch = lane; ch < K / 8; ch += 32) {
        float xv[8];
#pragma unroll
        for (int e = 0; e < 8; ++e) xv[e] = x[ch * 8 + e];
#pragma unroll
        for (int q = 0; q < NR; ++q) {
            const int r = r0 + q * rs;
            if (r < nrows) {
                float w[8];
                load8(W + (size_t)r * K + ch * 8, w);
#pragma unroll
                for (int e = 0; e < 8; ++e) acc[q] = fmaf(w[e], xv[e], acc[q]);
            }
        }
    }
#pragma unroll
    for (int q = 0; q < NR; ++q) out[q] = warp_sum(acc[q]);
}

// Device-side control and per-item bookkeeping, one struct so a launch takes one pointer.
struct DecCtl {
    int step;         // steps completed
    int done;         // 1 once every item has stopped or hit its cap
    int ticket;       // dec_project's last-block election
    int use_dropout;  // prenet dropout on/off
    unsigned seed_lo, seed_hi;
    int max_steps;    // global cap (<= the output buffers' T)
    int pad;
};

// ------------------------------------------------------------------------------------- LSTM cell

// One LSTM cell step for all B items: gates = W [in1, in2, h_prev] + bias, W packed per unit as
// [H][4][K] (rows i, f, g, o of unit j adjacent, K = D1 + D2 + H: the concat is never built),
// bias [H][4] = b_ih + b_hh. LSTM_SPLIT warps share a unit, each taking every LSTM_SPLIT-th
// 8-wide chunk of the input; items go BT at a time so a weight chunk is loaded once per BT items.
template <int D1, int D2, int H>
__device__ __forceinline__ void lstm_cell(const wt* __restrict__ W, const float* __restrict__ bias,
                                          const float* in1, const float* in2, const float* h_prev,
                                          float* h_new, float* c, int B) {
    constexpr int K = D1 + D2 + H;
    constexpr int NCH = K / 8;
    constexpr int S = LSTM_SPLIT;
    constexpr int NI = (NCH + 32 * S - 1) / (32 * S);
    constexpr int U = (NT / 32) / S;  // units per block
    constexpr int BT = 4;
    __shared__ float red[NT / 32][4][BT];

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int j = blockIdx.x * U + warp / S;
    const int part = warp % S;
    const bool active = j < H;
    const wt* Wj = W + (size_t)(active ? j : 0) * 4 * K;

    for (int b0 = 0; b0 < B; b0 += BT) {
        float acc[4][BT];
#pragma unroll
        for (int g = 0; g < 4; ++g)
#pragma unroll
            for (int t = 0; t < BT; ++t) acc[g][t] = 0.f;
#pragma unroll
        for (int i = 0; i < NI; ++i) {
            const int ch = part * 32 + lane + i * 32 * S;
            if (active && ch < NCH) {
                const int k0 = ch * 8;
                float w[4][8];
#pragma unroll
                for (int g = 0; g < 4; ++g) load8(Wj + (size_t)g * K + k0, w[g]);
                // the chunk's source: one of the three concatenated inputs (8 | D1, D2)
                const float* src;
                int ld;
                if (k0 < D1) { src = in1 + k0; ld = D1; }
                else if (k0 < D1 + D2) { src = in2 + (k0 - D1); ld = D2; }
                else { src = h_prev + (k0 - D1 - D2); ld = H; }
#pragma unroll
                for (int t = 0; t < BT; ++t) {
                    if (b0 + t < B) {
                        float x[8];
                        load8s(src + (size_t)(b0 + t) * ld, x);
#pragma unroll
                        for (int g = 0; g < 4; ++g)
#pragma unroll
                            for (int e = 0; e < 8; ++e) acc[g][t] = fmaf(w[g][e], x[e], acc[g][t]);
                    }
                }
            }
        }
#pragma unroll
        for (int g = 0; g < 4; ++g)
#pragma unroll
            for (int t = 0; t < BT; ++t) acc[g][t] = warp_sum(acc[g][t]);
        if (S > 1) {
            if (lane == 0)
#pragma unroll
                for (int g = 0; g < 4; ++g)
#pragma unroll
                    for (int t = 0; t < BT; ++t) red[warp][g][t] = acc[g][t];
            __syncthreads();
            if (part == 0 && lane == 0) {
#pragma unroll
                for (int q = 1; q < S; ++q)
#pragma unroll
                    for (int g = 0; g < 4; ++g)
#pragma unroll
                        for (int t = 0; t < BT; ++t) acc[g][t] += red[warp + q][g][t];
            }
            __syncthreads();  // red is reused by the next item tile
        }
        if (active && part == 0 && lane == 0) {
#pragma unroll
            for (int t = 0; t < BT; ++t) {
                const int b = b0 + t;
                if (b < B) {
                    const float ig = sigmoidf_(acc[0][t] + bias[4 * j + 0]);
                    const float fg = sigmoidf_(acc[1][t] + bias[4 * j + 1]);
                    const float gg = tanhf(acc[2][t] + bias[4 * j + 2]);
                    const float og = sigmoidf_(acc[3][t] + bias[4 * j + 3]);
                    const float cn = fg * c[(size_t)b * H + j] + ig * gg;
                    c[(size_t)b * H + j] = cn;
                    h_new[(size_t)b * H + j] = og * tanhf(cn);
                }
            }
        }
    }
}

// The block's weight rows ([U units][4][K], contiguous) towards the SM before the wait on the previous
// kernel: into L1 for halves (FP16 weights live in L2 already; 57-80 KB per block), into L2 for floats
// (73 MB of FP32 weights come from HBM).
template <int K, int H>
__device__ __forceinline__ void lstm_prefetch(const wt* __restrict__ W) {
#if LSTM_PREFETCH
    constexpr int U = (NT / 32) / LSTM_SPLIT;
    const int j0 = blockIdx.x * U;
    const int units = H - j0 < U ? H - j0 : U;
    const char* base = reinterpret_cast<const char*>(W + (size_t)j0 * 4 * K);
    const int nbytes = units * 4 * K * (int)sizeof(wt);
    for (int o = threadIdx.x * 128; o < nbytes; o += NT * 128) {
#if DEC_HALF
        asm volatile("prefetch.global.L1 [%0];" ::"l"(base + o));
#else
        asm volatile("prefetch.global.L2 [%0];" ::"l"(base + o));
#endif
    }
#endif
}

// attention RNN: input [prenet (PRENET), context (ENC)], hidden ATT_RNN. grid: ceil(ATT_RNN / U)
extern "C" __global__ void __launch_bounds__(NT, LSTM_MINB) dec_lstm_att(const DecCtl* ctl, const wt* __restrict__ W,
                                                              const float* __restrict__ bias, const float* prenet,
                                                              const float* context, float* h_att, float* c_att,
                                                              int B) {
    lstm_prefetch<PRENET + ENC + ATT_RNN, ATT_RNN>(W);
    PDL_WAIT();
    PDL_LAUNCH();
    if (ctl->done) return;
    const int s = ctl->step;
    const size_t half = (size_t)B * ATT_RNN;
    lstm_cell<PRENET, ENC, ATT_RNN>(W, bias, prenet, context, h_att + (s & 1) * half,
                                    h_att + ((s + 1) & 1) * half, c_att, B);
}

// decoder RNN: input [h_att (ATT_RNN), context (ENC)], hidden DEC_RNN. grid: ceil(DEC_RNN / U)
extern "C" __global__ void __launch_bounds__(NT, LSTM_MINB) dec_lstm_dec(const DecCtl* ctl, const wt* __restrict__ W,
                                                              const float* __restrict__ bias, const float* h_att,
                                                              const float* context, float* h_dec, float* c_dec,
                                                              int B) {
    lstm_prefetch<ATT_RNN + ENC + DEC_RNN, DEC_RNN>(W);
    PDL_WAIT();
    PDL_LAUNCH();
    if (ctl->done) return;
    const int s = ctl->step;
    lstm_cell<ATT_RNN, ENC, DEC_RNN>(W, bias, h_att + ((s + 1) & 1) * (size_t)B * ATT_RNN, context,
                                     h_dec + (s & 1) * (size_t)B * DEC_RNN,
                                     h_dec + ((s + 1) & 1) * (size_t)B * DEC_RNN, c_dec, B);
}

// ------------------------------------------------------------------------------------- batched LSTM (tensor cores)

// The FP16 engine at batch > LSTM_BT: lstm_cell reloads every weight chunk once per 4 items (8 times
// at B = 32, 123 of the step's 189 us on an H100). Here the gates of 4 units (16 rows of the packed
// W) for 8 items are one mma.sync.m16n8k16, so each weight is read once per step for all items, as at
// batch 1. The inputs are float: each x is split into two halves, hi = fp16(x) and lo = fp16(x - hi),
// and both are multiplied (products of halves are exact in the float accumulator), so the weights
// are FP16 but the math keeps ~22 bits of x, as in lstm_cell; a batch item matches itself alone.
//
// Block: LSTM_TC_ROWT row tiles of 16 rows x LSTM_TC_KS slices of K, one warp each. Each lane loads
// 8 consecutive weights of two rows (16 bytes each) and the same 8 inputs of one item. The MMA's k
// order is permuted to match (its k index 2t+e and 2t+8+e are taken from 8t+e and 8t+2+e of a
// 32-wide chunk: any bijection works when A and B use the same one), so no shuffles are needed. The
// K slices meet in shared memory in a fixed order (deterministic), then one thread per (unit, item)
// does the cell update. grid: 4 H / (16 LSTM_TC_ROWT) blocks.
#ifndef LSTM_TC_ROWT
#define LSTM_TC_ROWT 1
#endif
#define LSTM_TC_KS (8 / LSTM_TC_ROWT)
#ifndef LSTM_TC_UNROLL
#define LSTM_TC_UNROLL 4  // k-loop unrolling: chunks whose loads are in flight together
#endif
#define DO_PRAGMA(x) _Pragma(#x)
#define UNROLL_N(n) DO_PRAGMA(unroll n)
#define LSTM_TC_OK(D1, D2, H) (DEC_HALF && ((D1) + (D2) + (H)) % 32 == 0 && (H) % (4 * LSTM_TC_ROWT) == 0)
#define LSTM_TC (LSTM_TC_OK(PRENET, ENC, ATT_RNN) && LSTM_TC_OK(ATT_RNN, ENC, DEC_RNN))
static_assert(8 % LSTM_TC_ROWT == 0, "LSTM_TC_ROWT divides the 8 warps of a block");

#if LSTM_TC && (!defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800)
__device__ __forceinline__ void split_half2(float a, float b, unsigned& hi, unsigned& lo) {
    const __half2 h = __floats2half2_rn(a, b);
    const float2 hf = __half22float2(h);
    const __half2 l = __floats2half2_rn(a - hf.x, b - hf.y);
    hi = *reinterpret_cast<const unsigned*>(&h);
    lo = *reinterpret_cast<const unsigned*>(&l);
}
__device__ __forceinline__ void mma_16816(float (&d)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3,
                                          unsigned b0, unsigned b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};"
                 : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

template <int D1, int D2, int H>
__device__ __forceinline__ void lstm_cell_tc(const __half* __restrict__ W, const float* __restrict__ bias,
                                             const float* in1, const float* in2, const float* h_prev,
                                             float* h_new, float* c, int B) {
    constexpr int K = D1 + D2 + H, NKB = K / 32, RT = LSTM_TC_ROWT, KS = LSTM_TC_KS;
    __shared__ float red[KS][RT][16][33];  // 33: the column writes of a warp hit distinct banks
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int rt = warp % RT, ks = warp / RT;
    const int row0 = (blockIdx.x * RT + rt) * 16;
    const int kb0 = ks * NKB / KS, kb1 = (ks + 1) * NKB / KS;
    const __half* Wg = W + (size_t)(row0 + g) * K + 8 * t;  // row g; row g + 8 is 8 K further
    for (int nb = 0; nb < B; nb += 32) {
        float acc[4][4];
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[q][0] = acc[q][1] = acc[q][2] = acc[q][3] = 0.f;
        UNROLL_N(LSTM_TC_UNROLL)
        for (int kb = kb0; kb < kb1; ++kb) {
            const uint4 wa = __ldg(reinterpret_cast<const uint4*>(Wg + kb * 32));                  // row g
            const uint4 wb = __ldg(reinterpret_cast<const uint4*>(Wg + (size_t)8 * K + kb * 32));  // row g + 8
            const int k = kb * 32 + 8 * t;  // this lane's 8 inputs: one of the three concatenated vectors
            const float* src;
            int ld;
            if (k < D1) { src = in1 + k; ld = D1; }
            else if (k < D1 + D2) { src = in2 + (k - D1); ld = D2; }
            else { src = h_prev + (k - D1 - D2); ld = H; }
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                if (nb + q * 8 < B) {  // warp-uniform
                    const int n = nb + q * 8 + g;
                    float x[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
                    if (n < B) load8s(src + (size_t)n * ld, x);
                    unsigned xh[4], xl[4];
#pragma unroll
                    for (int e = 0; e < 4; ++e) split_half2(x[2 * e], x[2 * e + 1], xh[e], xl[e]);
                    // first MMA: k 8t+0..3 of the chunk, second: 8t+4..7
                    mma_16816(acc[q], wa.x, wb.x, wa.y, wb.y, xh[0], xh[1]);
                    mma_16816(acc[q], wa.x, wb.x, wa.y, wb.y, xl[0], xl[1]);
                    mma_16816(acc[q], wa.z, wb.z, wa.w, wb.w, xh[2], xh[3]);
                    mma_16816(acc[q], wa.z, wb.z, wa.w, wb.w, xl[2], xl[3]);
                }
            }
        }
        // accumulator (q, e): row g (e < 2) or g + 8, item nb + 8q + 2t + (e & 1)
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            red[ks][rt][g][8 * q + 2 * t] = acc[q][0];
            red[ks][rt][g][8 * q + 2 * t + 1] = acc[q][1];
            red[ks][rt][g + 8][8 * q + 2 * t] = acc[q][2];
            red[ks][rt][g + 8][8 * q + 2 * t + 1] = acc[q][3];
        }
        __syncthreads();
        for (int p = threadIdx.x; p < RT * 4 * 32; p += NT) {
            const int item = p & 31, u = p >> 5;  // u: the block's unit; rows 4u' .. of row tile u / 4
            const int b = nb + item, j = blockIdx.x * RT * 4 + u;
            const int r_t = u >> 2, r0 = (u & 3) * 4;
            if (b < B && j < H) {
                float gs[4];
#pragma unroll
                for (int gate = 0; gate < 4; ++gate) {
                    float sum = 0.f;
#pragma unroll
                    for (int q = 0; q < KS; ++q) sum += red[q][r_t][r0 + gate][item];
                    gs[gate] = sum + bias[4 * j + gate];
                }
                const float cn = sigmoidf_(gs[1]) * c[(size_t)b * H + j] + sigmoidf_(gs[0]) * tanhf(gs[2]);
                c[(size_t)b * H + j] = cn;
                h_new[(size_t)b * H + j] = sigmoidf_(gs[3]) * tanhf(cn);
            }
        }
        __syncthreads();  // red is reused by the next 32 items
    }
}

// the two LSTMs as dec_lstm_att / dec_lstm_dec, on tensor cores (grid 4 H / (16 LSTM_TC_ROWT))
extern "C" __global__ void __launch_bounds__(NT) dec_lstm_att_tc(const DecCtl* ctl, const wt* __restrict__ W,
                                                                 const float* __restrict__ bias, const float* prenet,
                                                                 const float* context, float* h_att, float* c_att,
                                                                 int B) {
    PDL_WAIT();
    PDL_LAUNCH();
    if (ctl->done) return;
    const int s = ctl->step;
    const size_t half = (size_t)B * ATT_RNN;
    lstm_cell_tc<PRENET, ENC, ATT_RNN>(W, bias, prenet, context, h_att + (s & 1) * half,
                                       h_att + ((s + 1) & 1) * half, c_att, B);
}
extern "C" __global__ void __launch_bounds__(NT) dec_lstm_dec_tc(const DecCtl* ctl, const wt* __restrict__ W,
                                                                 const float* __restrict__ bias, const float* h_att,
                                                                 const float* context, float* h_dec, float* c_dec,
                                                                 int B) {
    PDL_WAIT();
    PDL_LAUNCH();
    if (ctl->done) return;
    const int s = ctl->step;
    lstm_cell_tc<ATT_RNN, ENC, DEC_RNN>(W, bias, h_att + ((s + 1) & 1) * (size_t)B * ATT_RNN, context,
                                        h_dec + (s & 1) * (size_t)B * DEC_RNN,
                                        h_dec + ((s + 1) & 1) * (size_t)B * DEC_RNN, c_dec, B);
}
#endif

// ------------------------------------------------------------------------------------- attention

// Partial energies for ENERGY_AD attention dims a0 .. a0 + AD - 1 of one item, every encoder step:
// grid (ATT_DIM / AD, B), dynamic shared memory 2 (T_in + LOC_K - 1) floats.
//   q_a = Wq[a] . h_att                          (AD rows: one per warp, K split over the lanes)
//   x   = q_a + pm[b, t, a] + loc[a] * [w_prev, w_cum] around t   (conv + dense folded: [ATT_DIM][2][LOC_K])
//   epart[blockIdx.x, b, t] = sum over the block's dims of v_a tanh(x), and -inf for t >= in_len[b]
// dec_att_context adds the ATT_DIM / AD partials (fixed order: deterministic). v3 computed all 128
// query rows in every block (256 KB from L2 per block, 25 us); now each block reads 8 rows.
extern "C" __global__ void __launch_bounds__(NT, 4) dec_att_energy(
    const DecCtl* ctl, const wt* __restrict__ Wq, const float* __restrict__ loc_w, const float* __restrict__ v,
    const float* h_att, const float* __restrict__ pm, const float* aw, const float* cum, const int* __restrict__ in_len,
    float* epart, int B, int T_in) {
    constexpr int AD = ENERGY_AD, PAD = (LOC_K - 1) / 2, NCH = ATT_RNN / 8, QI = (NCH + 31) / 32;
    constexpr int RPW = (AD + NT / 32 - 1) / (NT / 32);  // query rows per warp
    extern __shared__ float win[];                      // [2][T_in + LOC_K - 1]: w_prev, w_cum, zero-padded
    __shared__ float q[AD];
    __shared__ float wl[AD * 2 * LOC_K];  // this block's rows of the folded location filter
    const int b = blockIdx.y, a0 = blockIdx.x * AD;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int a = threadIdx.x % AD, tl = threadIdx.x / AD;

    // weights first: they do not depend on the previous kernel
    float wq[RPW][QI][8];
#pragma unroll
    for (int r = 0; r < RPW; ++r)
#pragma unroll
        for (int i = 0; i < QI; ++i) {
            const int row = warp + r * (NT / 32), ch = lane + 32 * i;
            if (row < AD && ch < NCH) load8(Wq + (size_t)(a0 + row) * ATT_RNN + ch * 8, wq[r][i]);
        }
    for (int i = threadIdx.x; i < AD * 2 * LOC_K; i += NT) wl[i] = loc_w[(size_t)a0 * 2 * LOC_K + i];
    const float va = v[a0 + a];

    PDL_WAIT();
    PDL_LAUNCH();
    if (ctl->done) return;
    const int s = ctl->step;
    const int L = in_len[b];
    const int WN = T_in + LOC_K - 1;
    for (int i = threadIdx.x; i < WN; i += NT) {
        const int t = i - PAD;
        const bool in = t >= 0 && t < T_in;
        win[i] = in ? aw[(size_t)b * T_in + t] : 0.f;
        win[WN + i] = in ? cum[(size_t)b * T_in + t] : 0.f;
    }
    const float* h = h_att + ((s + 1) & 1) * (size_t)B * ATT_RNN + (size_t)b * ATT_RNN;
#pragma unroll
    for (int r = 0; r < RPW; ++r) {
        const int row = warp + r * (NT / 32);
        float acc = 0.f;
#pragma unroll
        for (int i = 0; i < QI; ++i) {
            const int ch = lane + 32 * i;
            if (row < AD && ch < NCH) {
                float x[8];
                load8s(h + ch * 8, x);
#pragma unroll
                for (int e = 0; e < 8; ++e) acc = fmaf(wq[r][i][e], x[e], acc);
            }
        }
        acc = warp_sum(acc);
        if (lane == 0 && row < AD) q[row] = acc;
    }
    __syncthreads();

    const float qa = q[a];
    float* out = epart + ((size_t)blockIdx.x * B + b) * T_in;
    constexpr int TS = NT / AD;  // encoder steps per pass; the AD lanes of a step are adjacent
    for (int t0 = 0; t0 < T_in; t0 += TS) {  // uniform trip count: the shuffles need every lane
        const int t = t0 + tl;
        float val = 0.f;
        if (t < L) {
            float x = qa + pm[((size_t)b * T_in + t) * ATT_DIM + a0 + a];
#pragma unroll
            for (int j = 0; j < LOC_K; ++j) x = fmaf(wl[a * 2 * LOC_K + j], win[t + j], x);
#pragma unroll
            for (int j = 0; j < LOC_K; ++j) x = fmaf(wl[a * 2 * LOC_K + LOC_K + j], win[WN + t + j], x);
            val = va * tanhf(x);
        }
#pragma unroll
        for (int o = AD / 2; o > 0; o >>= 1) val += __shfl_xor_sync(0xffffffffu, val, o);
        if (a == 0 && t < T_in) out[t] = t < L ? val : NEG_INF;
    }
}

// Softmax over t < in_len[b] of e = the sum of dec_att_energy's ATT_DIM / ENERGY_AD partials, then
// context[b, d] = sum_t w_t memory[b, t, d] for this block's CTX_D dims: grid (ENC / CTX_D, B), dynamic
// shared memory T_in floats. Block x == 0 of each item also stores the weights, adds them to the
// cumulative weights and writes the alignment row (unless the item stopped at an earlier step: its
// outputs keep their fill values).
#ifndef CTX_D
#define CTX_D 128  // decoder.py's context_dims(ENC)
#endif
static_assert(ENC % CTX_D == 0 && CTX_D % 8 == 0 && CTX_D <= NT && NT % (CTX_D / 8) == 0,
              "CTX_D: a power of two from 8 to 128 dividing ENC");
extern "C" __global__ void __launch_bounds__(NT) dec_att_context(
    const DecCtl* ctl, const float* epart, const wt* __restrict__ memory, const int* __restrict__ in_len,
    const int* stopped, float* aw, float* cum, float* context, float* alignment, int B, int T_in, int T_out) {
    constexpr int NP = ATT_DIM / ENERGY_AD;
    PDL_WAIT();
    PDL_LAUNCH();
    if (ctl->done) return;
    extern __shared__ float w[];
    __shared__ float red[NT / 32];
    __shared__ float acc2[NT / (CTX_D / 8)][CTX_D];
    const int b = blockIdx.y;
    const int L = in_len[b];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;

    float m = NEG_INF;
    for (int t = threadIdx.x; t < L; t += NT) {
        float e = 0.f;
#pragma unroll
        for (int p = 0; p < NP; ++p) e += epart[((size_t)p * B + b) * T_in + t];
        w[t] = e;  // read back below by this same thread
        m = fmaxf(m, e);
    }
    m = warp_max(m);
    if (lane == 0) red[warp] = m;
    __syncthreads();
    m = red[0];
#pragma unroll
    for (int i = 1; i < NT / 32; ++i) m = fmaxf(m, red[i]);
    __syncthreads();
    float sum = 0.f;
    for (int t = threadIdx.x; t < T_in; t += NT) {
        const float x = t < L ? expf(w[t] - m) : 0.f;
        w[t] = x;
        sum += x;
    }
    sum = warp_sum(sum);
    if (lane == 0) red[warp] = sum;
    __syncthreads();
    sum = 0.f;
#pragma unroll
    for (int i = 0; i < NT / 32; ++i) sum += red[i];
    const float inv = 1.0f / sum;
    for (int t = threadIdx.x; t < T_in; t += NT) w[t] *= inv;
    __syncthreads();

    if (blockIdx.x == 0) {
        const int s = ctl->step;
        const bool write_align = alignment != nullptr && stopped[b] == 0;
        for (int t = threadIdx.x; t < T_in; t += NT) {
            aw[(size_t)b * T_in + t] = w[t];
            cum[(size_t)b * T_in + t] += w[t];
            if (write_align) alignment[((size_t)b * T_out + s) * T_in + t] = w[t];
        }
    }

    // 8 dims per thread (one 16-byte load of halves, two of floats), CTX_D / 8 = 16 threads per
    // encoder step, NT / 16 = 16 steps in flight; v3 had 2 steps and one 2-byte load per thread.
    constexpr int DT = CTX_D / 8, P = NT / DT;
    const int d0 = blockIdx.x * CTX_D + (threadIdx.x % DT) * 8, p = threadIdx.x / DT;
    const wt* mem = memory + (size_t)b * T_in * ENC + d0;
    float acc[8];
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[e] = 0.f;
#pragma unroll 2
    for (int t = p; t < L; t += P) {
        float x[8];
        load8(mem + (size_t)t * ENC, x);
        const float wt_ = w[t];
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[e] = fmaf(wt_, x[e], acc[e]);
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) acc2[p][(threadIdx.x % DT) * 8 + e] = acc[e];
    __syncthreads();
    if (threadIdx.x < CTX_D) {
        float r = 0.f;
#pragma unroll
        for (int i = 0; i < P; ++i) r += acc2[i][threadIdx.x];
        context[(size_t)b * ENC + blockIdx.x * CTX_D + threadIdx.x] = r;
    }
}

// ------------------------------------------------------------------------------------- output

// [mel frame, gate] = Wo [h_dec, context] + bo, one row per warp: grid (ceil((N_MEL + 1) / 8), B).
// Each block writes its rows (mel_out, and ybuf for the prenet); the last block of an item (ticket
// tickets[b]) does the item's gate output, stop test and the prenet of the next step's input frame
// (the teacher's frame s when given, else this mel frame). The last of those (ctl->ticket) advances
// the step, decides `done` and, inside a WHILE graph node, sets its condition.
//   Wo [N_MEL + 1][DEC_RNN + ENC] (wt), bo float; W1 [PRENET][N_MEL], W2 [PRENET][PRENET] (wt)
//   mel_out (B, N_MEL, T_out), gate_out (B, T_out); teacher (B, N_MEL, T_teach) or null
//   keys[b]: the item's dropout stream (the Philox counter's item word): an item's masks do not
//            depend on its place in the batch
//   stopped[b]: 0 running, 1 stopped by the gate, 2 hit its cap; lengths[b]: NVIDIA's mel_lengths
//   tickets[b]: 0 between launches; ybuf (B, N_MEL + 1) scratch
// v2 ran one block per item: its 81 rows x 1536 (250 KB) through one SM, 18 us.
extern "C" __global__ void __launch_bounds__(NT, 2) dec_project(
    DecCtl* ctl, const wt* __restrict__ Wo, const float* __restrict__ bo, const wt* __restrict__ W1,
    const wt* __restrict__ W2, const float* h_dec, const float* context, const float* __restrict__ teacher,
    int T_teach, const int* __restrict__ caps, const int* __restrict__ keys, int* stopped, int* lengths,
    int* tickets, float* ybuf, float* mel_out, float* gate_out, float* prenet_out, int B, int T_out,
    float gate_threshold, int use_cond, cudaGraphConditionalHandle cond) {
    constexpr int K = DEC_RNN + ENC, NCH = K / 8, PI = (NCH + 31) / 32, NY = N_MEL + 1;
    __shared__ __align__(16) float y[NY];
    __shared__ __align__(16) float p1[PRENET];
    __shared__ __align__(16) float frame[N_MEL];
    __shared__ int is_last;
    const int b = blockIdx.y;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int r = blockIdx.x * PROJ_ROWS + warp;

    // this warp's weight row into registers before the wait (constant data)
    float wr[PI][8];
#pragma unroll
    for (int i = 0; i < PI; ++i) {
        const int ch = lane + 32 * i;
        if (r < NY && ch < NCH) load8(Wo + (size_t)r * K + ch * 8, wr[i]);
    }
    const float br = r < NY ? bo[r] : 0.f;

    PDL_WAIT();
    PDL_LAUNCH();
    if (ctl->done) return;
    const int s = ctl->step;
    const int was_stopped = stopped[b];  // written below only after every block of the item passed
    const float* hd = h_dec + ((s + 1) & 1) * (size_t)B * DEC_RNN + (size_t)b * DEC_RNN;
    const float* cx = context + (size_t)b * ENC;
    if (r < NY) {
        float acc = 0.f;
#pragma unroll
        for (int i = 0; i < PI; ++i) {
            const int ch = lane + 32 * i;
            if (ch < NCH) {
                const int k0 = ch * 8;
                float x[8];
                load8s(k0 < DEC_RNN ? hd + k0 : cx + (k0 - DEC_RNN), x);
#pragma unroll
                for (int e = 0; e < 8; ++e) acc = fmaf(wr[i][e], x[e], acc);
            }
        }
        acc = warp_sum(acc) + br;
        if (lane == 0) {
            ybuf[(size_t)b * NY + r] = acc;
            if (!was_stopped && r < N_MEL) mel_out[((size_t)b * N_MEL + r) * T_out + s] = acc;
        }
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        is_last = atomicAdd(&tickets[b], 1) == (int)gridDim.x - 1;
    }
    __syncthreads();
    if (!is_last) return;
    __threadfence();
    for (int i = threadIdx.x; i < NY; i += NT) y[i] = __ldcg(ybuf + (size_t)b * NY + i);
    __syncthreads();
    if (threadIdx.x == 0) {
        tickets[b] = 0;
        if (!was_stopped) {
            gate_out[(size_t)b * T_out + s] = y[N_MEL];
            // NVIDIA: not_finished *= sigmoid(gate) <= threshold; mel_lengths += not_finished
            if (sigmoidf_(y[N_MEL]) > gate_threshold) {
                stopped[b] = 1;
            } else {
                const int len = lengths[b] + 1;
                lengths[b] = len;
                if (len >= caps[b] || s + 1 >= ctl->max_steps) stopped[b] = 2;
            }
        }
    }

    // prenet of the next input frame, for step s + 1
    for (int i = threadIdx.x; i < N_MEL; i += NT)
        frame[i] = teacher ? (s < T_teach ? teacher[((size_t)b * N_MEL + i) * T_teach + s] : 0.f) : y[i];
    __syncthreads();
    const bool drop = ctl->use_dropout != 0;
    const uint2 seed = make_uint2(ctl->seed_lo, ctl->seed_hi);
    const int key = keys[b];
    for (int j = threadIdx.x; j < PRENET; j += NT) {
        float acc = 0.f;
#pragma unroll
        for (int ch = 0; ch < N_MEL / 8; ++ch) {
            float w[8];
            load8(W1 + (size_t)j * N_MEL + ch * 8, w);
#pragma unroll
            for (int e = 0; e < 8; ++e) acc = fmaf(w[e], frame[ch * 8 + e], acc);
        }
        acc = fmaxf(acc, 0.f);
        if (drop) acc = dropout_keep(seed, s + 1, key, 0, j) ? 2.f * acc : 0.f;
        p1[j] = acc;
    }
    __syncthreads();
    constexpr int NR2 = 16;
    for (int base = warp; base < PRENET; base += (NT / 32) * NR2) {
        float out[NR2];
        warp_rows<NR2, PRENET>(W2, p1, base, NT / 32, PRENET, out);
        // lane i takes row i (every lane holds every sum), then one Philox per lane: 16 lanes at once.
        // (v1-v4a had the Philox inside `if (lane == i)` of the unrolled loop: 16 rounds one lane
        // after another, ~10 us of dec_project.)
        float mine = 0.f;
#pragma unroll
        for (int i = 0; i < NR2; ++i) mine = lane == i ? out[i] : mine;
        const int j = base + lane * (NT / 32);
        if (lane < NR2 && j < PRENET) {
            float v = fmaxf(mine, 0.f);
            if (drop) v = dropout_keep(seed, s + 1, key, 1, j) ? 2.f * v : 0.f;
            prenet_out[(size_t)b * PRENET + j] = v;
        }
    }

    // last block: advance the step and decide whether another one is needed
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        const int t = atomicAdd(&ctl->ticket, 1);
        if (t == B - 1) {
            __threadfence();
            int all = 1;
            for (int i = 0; i < B; ++i) all &= (((volatile int*)stopped)[i] != 0);
            const int done = all || s + 1 >= ctl->max_steps;
            ctl->ticket = 0;
            ctl->step = s + 1;
            ctl->done = done;
            if (use_cond) cudaGraphSetConditional(cond, done ? 0u : 1u);
        }
    }
}

// FP32 memory -> the engine's weight type (the context product reads memory in that type).
extern "C" __global__ void dec_cast_memory(const float* __restrict__ src, wt* __restrict__ dst, long n) {
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
        dst[i] = (wt)src[i];
}
