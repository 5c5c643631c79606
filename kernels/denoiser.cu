// Denoiser kernels (NVIDIA's WaveGlow denoiser, STFT 1024 / hop 256 / Hann 1024). The DFTs are two
// float32 cuBLAS GEMMs with the windowed forward basis and the windowed pseudo-inverse basis; these
// kernels do what lies between them. A ragged batch is its items' STFT frames laid end to end:
// item b owns frames [foff[b], foff[b+1]), n_b / hop + 1 of them for n_b samples.
#include "common.cuh"

#ifndef DN_N
#define DN_N 1024   // filter length
#endif
#ifndef DN_HOP
#define DN_HOP 256
#endif
#define DN_BINS (DN_N / 2 + 1)

// frames[m][i] = reflect-padded audio[hop*m + i - N/2] (NVIDIA pads N/2 each side, mode 'reflect').
extern "C" __global__ void dn_frames(const float* __restrict__ audio, int stride, const int* __restrict__ n_samples,
                                     const int* __restrict__ foff, int n_items, int n_frames, float* __restrict__ frames) {
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)n_frames * DN_N) return;
    const int m = (int)(i / DN_N), k = (int)(i % DN_N);
    const int b = find_item(foff, n_items, m);
    const int n = n_samples[b];
    int p = (m - foff[b]) * DN_HOP + k - DN_N / 2;
    if (p < 0) p = -p;
    if (p >= n) p = 2 * (n - 1) - p;
    frames[i] = audio[(long)b * stride + p];
}

// spec rows are [re_0..re_{N/2}, im_0..im_{N/2}] per frame. Magnitude minus strength * bias, floored
// at 0, recombined with the original phase (atan2, as NVIDIA: a zero bin keeps phase 0).
extern "C" __global__ void dn_subtract(float* __restrict__ spec, int n_frames, const float* __restrict__ bias,
                                       float strength) {
    const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (long)n_frames * DN_BINS) return;
    const int m = (int)(i / DN_BINS), f = (int)(i % DN_BINS);
    float* row = spec + (long)m * 2 * DN_BINS;
    const float re = row[f], im = row[DN_BINS + f];
    const float mag = sqrtf(re * re + im * im);
    const float ph = atan2f(im, re);
    const float mg = fmaxf(mag - strength * bias[f], 0.0f);
    float s, c;
    sincosf(ph, &s, &c);
    row[f] = mg * c;
    row[DN_BINS + f] = mg * s;
}

// Overlap-add of the inverse-transformed frames, divided by the summed squared window where that is
// above float32's tiny (NVIDIA's window_sumsquare rule), the N/2 reflect padding dropped. Each
// output sample gathers its <= N/hop frames: no atomics. out is (B, stride), zero past the end.
extern "C" __global__ void dn_overlap_add(const float* __restrict__ frames, const int* __restrict__ foff, int n_items,
                                          const float* __restrict__ win_sq, float* __restrict__ out, int stride) {
    const int b = blockIdx.y;
    const int nf = foff[b + 1] - foff[b];
    const int n_out = (nf - 1) * DN_HOP;
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= stride) return;
    if (n >= n_out) { out[(long)b * stride + n] = 0.0f; return; }
    const int p = n + DN_N / 2;
    int m_lo = (p - DN_N + DN_HOP) / DN_HOP;  // ceil((p - N + 1) / hop) for p >= N - hop
    if (p - DN_N + 1 <= 0) m_lo = 0;
    int m_hi = p / DN_HOP;
    if (m_hi > nf - 1) m_hi = nf - 1;
    float s = 0.0f, w = 0.0f;
    for (int m = m_lo; m <= m_hi; ++m) {
        const int k = p - m * DN_HOP;
        s += frames[(long)(foff[b] + m) * DN_N + k];
        w += win_sq[k];
    }
    if (w > 1.17549435e-38f) s /= w;
    out[(long)b * stride + n] = s;
}
