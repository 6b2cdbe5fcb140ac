// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// A batched complex FFT: one plan of length n transforms `BatchFFT::Lanes` independent
/// sequences at once, with every arithmetic operation acting on a whole lane group (one SIMD
/// register of 64 bytes: 16 floats or 8 doubles) — the data layout is element-major,
/// buffer[k·Lanes + lane]. Mixed radix (4, 2, 3, 5, then any prime), decimation in time,
/// out of place, twiddles computed in double. This is the engine of the fast DCT (dct.hpp):
/// a matrix has thousands of rows or columns of one length, so vectorising across them is
/// both simpler and faster than vectorising one transform.

#include "../core/config.hpp"

#include <Eigen/Core>

#include <cmath>
#include <vector>

namespace wproj {
namespace detail {

template <typename Scalar>
class BatchFFT {
 public:
  /// Sequences transformed together (one 64-byte lane group).
  static constexpr int Lanes = int(64 / sizeof(Scalar));
  using Lane = Eigen::Array<Scalar, Lanes, 1>;
  using LaneMap = Eigen::Map<Lane, Eigen::Unaligned>;
  using ConstLaneMap = Eigen::Map<const Lane, Eigen::Unaligned>;
  /// Scratch buffers of n·Lanes scalars (aligned to Eigen's maximum alignment).
  using Buffer = Eigen::Array<Scalar, Eigen::Dynamic, 1>;

  explicit BatchFFT(Index n = 1) : m_n(n) {
    requireArg(n >= 1, "BatchFFT", "n", n, ">= 1");
    const double pi = 3.14159265358979323846264338327950288;
    m_twRe.resize(n);
    m_twIm.resize(n);
    for (Index t = 0; t < n; ++t) {
      const double a = -2.0 * pi * double(t) / double(n);
      m_twRe(t) = Scalar(std::cos(a));
      m_twIm(t) = Scalar(std::sin(a));
    }
    Index rest = n;
    for (Index p : {Index(4), Index(2), Index(3), Index(5)})
      while (rest % p == 0 && rest > 1) {
        m_factors.push_back(p);
        rest /= p;
      }
    for (Index p = 7; p * p <= rest; p += 2)
      while (rest % p == 0) {
        m_factors.push_back(p);
        rest /= p;
      }
    if (rest > 1) m_factors.push_back(rest);
    Index maxRadix = 1;
    for (Index p : m_factors) maxRadix = std::max(maxRadix, p);
    m_scratchLanes = maxRadix;
  }

  Index size() const { return m_n; }

  /// Buffers of the right size for `forward` (n lane groups).
  Buffer makeBuffer() const { return Buffer::Zero(m_n * Lanes); }
  /// Scratch for `forward` (the largest radix, in lane groups, real and imaginary parts).
  Buffer makeScratch() const { return Buffer::Zero(2 * m_scratchLanes * Lanes); }

  /// out = DFT(in) for every lane, X_k = Σ_j x_j e^{−2πi jk/n}. `in` and `out` are distinct
  /// buffers of n lane groups each (real and imaginary parts apart).
  void forward(const Scalar* inRe, const Scalar* inIm, Scalar* outRe, Scalar* outIm, Scalar* scratch) const {
    if (m_factors.empty()) {  // n = 1: the identity
      LaneMap{outRe} = ConstLaneMap{inRe};
      LaneMap{outIm} = ConstLaneMap{inIm};
      return;
    }
    work(outRe, outIm, inRe, inIm, 1, 0, scratch);
  }

 private:
  // Kissfft-style recursion: the p sub-sequences x[q + p·j] are transformed into consecutive
  // blocks of `out`, then combined by radix-p butterflies with twiddles of stride `fstride`.
  void work(Scalar* oRe, Scalar* oIm, const Scalar* iRe, const Scalar* iIm, Index fstride, std::size_t level,
            Scalar* scratch) const {
    const Index p = m_factors[level];
    const Index m = m_n / (fstride * p);  // length of each sub-transform
    if (m == 1) {
      for (Index q = 0; q < p; ++q) {
        LaneMap(oRe + q * Lanes) = ConstLaneMap(iRe + q * fstride * Lanes);
        LaneMap(oIm + q * Lanes) = ConstLaneMap(iIm + q * fstride * Lanes);
      }
    } else {
      for (Index q = 0; q < p; ++q)
        work(oRe + q * m * Lanes, oIm + q * m * Lanes, iRe + q * fstride * Lanes, iIm + q * fstride * Lanes,
             fstride * p, level + 1, scratch);
    }
    switch (p) {
      case 2: radix2(oRe, oIm, fstride, m); break;
      case 4: radix4(oRe, oIm, fstride, m); break;
      default: radixGeneric(oRe, oIm, fstride, m, p, scratch); break;
    }
  }

  // a ← a·w for a lane group and a scalar complex w.
  static void twiddle(Lane& re, Lane& im, Scalar wr, Scalar wi) {
    const Lane r = re * wr - im * wi;
    im = re * wi + im * wr;
    re = r;
  }

  void radix2(Scalar* re, Scalar* im, Index fstride, Index m) const {
    for (Index u = 0; u < m; ++u) {
      LaneMap r0(re + u * Lanes), i0(im + u * Lanes), r1(re + (u + m) * Lanes), i1(im + (u + m) * Lanes);
      Lane br = r1, bi = i1;
      if (u != 0) twiddle(br, bi, m_twRe(u * fstride), m_twIm(u * fstride));
      const Lane ar = r0, ai = i0;
      r0 = ar + br;
      i0 = ai + bi;
      r1 = ar - br;
      i1 = ai - bi;
    }
  }

  void radix4(Scalar* re, Scalar* im, Index fstride, Index m) const {
    for (Index u = 0; u < m; ++u) {
      LaneMap r0(re + u * Lanes), i0(im + u * Lanes), r1(re + (u + m) * Lanes), i1(im + (u + m) * Lanes),
          r2(re + (u + 2 * m) * Lanes), i2(im + (u + 2 * m) * Lanes), r3(re + (u + 3 * m) * Lanes),
          i3(im + (u + 3 * m) * Lanes);
      Lane a1r = r1, a1i = i1, a2r = r2, a2i = i2, a3r = r3, a3i = i3;
      if (u != 0) {
        twiddle(a1r, a1i, m_twRe(u * fstride), m_twIm(u * fstride));
        twiddle(a2r, a2i, m_twRe(2 * u * fstride), m_twIm(2 * u * fstride));
        twiddle(a3r, a3i, m_twRe(3 * u * fstride), m_twIm(3 * u * fstride));
      }
      const Lane t0r = r0 + a2r, t0i = i0 + a2i, t1r = r0 - a2r, t1i = i0 - a2i;
      const Lane t2r = a1r + a3r, t2i = a1i + a3i, t3r = a1r - a3r, t3i = a1i - a3i;
      r0 = t0r + t2r;
      i0 = t0i + t2i;
      r2 = t0r - t2r;
      i2 = t0i - t2i;
      r1 = t1r + t3i;  // t1 − i·t3
      i1 = t1i - t3r;
      r3 = t1r - t3i;  // t1 + i·t3
      i3 = t1i + t3r;
    }
  }

  void radixGeneric(Scalar* re, Scalar* im, Index fstride, Index m, Index p, Scalar* scratch) const {
    Scalar* sRe = scratch;
    Scalar* sIm = scratch + p * Lanes;
    const Index step = fstride * m;  // n / p: the twiddle stride of the p-point DFT
    for (Index u = 0; u < m; ++u) {
      for (Index q = 0; q < p; ++q) {
        Lane ar = ConstLaneMap(re + (u + q * m) * Lanes), ai = ConstLaneMap(im + (u + q * m) * Lanes);
        const Index t = (u * q * fstride) % m_n;
        if (t != 0) twiddle(ar, ai, m_twRe(t), m_twIm(t));
        LaneMap(sRe + q * Lanes) = ar;
        LaneMap(sIm + q * Lanes) = ai;
      }
      for (Index k = 0; k < p; ++k) {
        Lane accR = ConstLaneMap(sRe), accI = ConstLaneMap(sIm);
        for (Index q = 1; q < p; ++q) {
          const Index t = ((q * k) % p) * step;
          const Scalar wr = m_twRe(t), wi = m_twIm(t);
          const ConstLaneMap xr(sRe + q * Lanes), xi(sIm + q * Lanes);
          accR += xr * wr - xi * wi;
          accI += xr * wi + xi * wr;
        }
        LaneMap(re + (u + k * m) * Lanes) = accR;
        LaneMap(im + (u + k * m) * Lanes) = accI;
      }
    }
  }

  Index m_n;
  Eigen::Array<Scalar, Eigen::Dynamic, 1> m_twRe, m_twIm;
  std::vector<Index> m_factors;
  Index m_scratchLanes = 1;
};

}  // namespace detail

}  // namespace wproj
