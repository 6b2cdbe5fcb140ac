// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Element types of tensor files and conversion of stored elements to/from float and double.
///
/// Half precision (IEEE binary16, "F16") and bfloat16 ("BF16") appear only here: they are decoded
/// to float/double on load and encoded on store with a single rounding to nearest, ties to even,
/// directly from the source value (no double rounding through float). NaN stays NaN (quiet, sign
/// kept), ±Inf stays ±Inf, values beyond the largest finite number round to ±Inf as IEEE
/// requires, and subnormals are produced and read exactly. All storage is little-endian.

#include "../core/config.hpp"

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

namespace wproj {
namespace io {

/// Element types of safetensors files (names as in the format) and .npy arrays.
///
/// Every dtype of the safetensors format is known by name and size. Those that wproj can read as
/// real numbers (`isReadableAsReal`): the integers, BOOL, F16, BF16, F32, F64, F8_E4M3 and
/// F8_E5M2. The others — F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, the sub-byte F4, F6_E2M3, F6_E3M2,
/// the complex C64 — and any dtype name the format may add later (`Unknown`, its name kept in
/// `TensorInfo::dtypeText`) are listed and can be read and written as raw bytes.
enum class DType {
  Bool, U8, I8, U16, I16, U32, I32, U64, I64, F16, BF16, F32, F64, F8E4M3, F8E5M2,
  F8E8M0, F8E4M3FNUZ, F8E5M2FNUZ, F4, F6E2M3, F6E3M2, C64,
  Unknown  ///< a dtype name wproj does not know; its size is not known either
};

/// Bits per element (4 for F4, 6 for F6_*; 0 for `Unknown`).
inline std::size_t dtypeBits(DType t) {
  switch (t) {
    case DType::F4: return 4;
    case DType::F6E2M3: case DType::F6E3M2: return 6;
    case DType::Bool: case DType::U8: case DType::I8: case DType::F8E4M3: case DType::F8E5M2:
    case DType::F8E8M0: case DType::F8E4M3FNUZ: case DType::F8E5M2FNUZ: return 8;
    case DType::U16: case DType::I16: case DType::F16: case DType::BF16: return 16;
    case DType::U32: case DType::I32: case DType::F32: return 32;
    case DType::U64: case DType::I64: case DType::F64: case DType::C64: return 64;
    case DType::Unknown: return 0;
  }
  return 0;
}

/// Bytes per element; 0 for the sub-byte dtypes (see `dtypeBits`) and for `Unknown`.
inline std::size_t dtypeSize(DType t) {
  const std::size_t bits = dtypeBits(t);
  return bits % 8 == 0 ? bits / 8 : 0;
}

/// The safetensors spelling of a dtype ("F32", "BF16", …; "UNKNOWN" for `Unknown`).
inline const char* dtypeName(DType t) {
  switch (t) {
    case DType::Bool: return "BOOL";
    case DType::U8: return "U8";
    case DType::I8: return "I8";
    case DType::U16: return "U16";
    case DType::I16: return "I16";
    case DType::U32: return "U32";
    case DType::I32: return "I32";
    case DType::U64: return "U64";
    case DType::I64: return "I64";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::F32: return "F32";
    case DType::F64: return "F64";
    case DType::F8E4M3: return "F8_E4M3";
    case DType::F8E5M2: return "F8_E5M2";
    case DType::F8E8M0: return "F8_E8M0";
    case DType::F8E4M3FNUZ: return "F8_E4M3FNUZ";
    case DType::F8E5M2FNUZ: return "F8_E5M2FNUZ";
    case DType::F4: return "F4";
    case DType::F6E2M3: return "F6_E2M3";
    case DType::F6E3M2: return "F6_E3M2";
    case DType::C64: return "C64";
    case DType::Unknown: return "UNKNOWN";
  }
  return "?";
}

/// Parses a safetensors dtype name; returns false if it is not one wproj knows.
inline bool parseDtypeName(const std::string& s, DType& out) {
  static const DType all[] = {DType::Bool,   DType::U8,         DType::I8,         DType::U16,    DType::I16,
                              DType::U32,    DType::I32,        DType::U64,        DType::I64,    DType::F16,
                              DType::BF16,   DType::F32,        DType::F64,        DType::F8E4M3, DType::F8E5M2,
                              DType::F8E8M0, DType::F8E4M3FNUZ, DType::F8E5M2FNUZ, DType::F4,     DType::F6E2M3,
                              DType::F6E3M2, DType::C64};
  for (DType t : all)
    if (s == dtypeName(t)) { out = t; return true; }
  return false;
}

/// Parses a user-facing dtype name: safetensors spelling or float32/float16/bfloat16/float64
/// (also fp32, fp16, bf16, f32, f16, f64, half, float, double). Throws InvalidArgument when unknown.
inline DType dtypeFromString(const std::string& name) {
  std::string s;
  for (char c : name) s += char(std::tolower(static_cast<unsigned char>(c)));
  if (s == "float32" || s == "fp32" || s == "f32" || s == "float") return DType::F32;
  if (s == "float64" || s == "fp64" || s == "f64" || s == "double") return DType::F64;
  if (s == "float16" || s == "fp16" || s == "f16" || s == "half") return DType::F16;
  if (s == "bfloat16" || s == "bf16") return DType::BF16;
  DType t;
  std::string upper;
  for (char c : name) upper += char(std::toupper(static_cast<unsigned char>(c)));
  if (parseDtypeName(upper, t)) return t;
  throw InvalidArgument("dtype: '" + name + "' is not a known dtype; expected float32, float16, bfloat16 or float64");
}

/// True for the floating-point dtypes wproj converts on load and store (F16, BF16, F32, F64).
inline bool isConvertibleFloat(DType t) {
  return t == DType::F16 || t == DType::BF16 || t == DType::F32 || t == DType::F64;
}

/// True for dtypes that can be read as float/double: the integers, BOOL, F16, BF16, F32, F64,
/// F8_E4M3 and F8_E5M2 (see `decodeElements`). The others are read as raw bytes.
inline bool isReadableAsReal(DType t) {
  switch (t) {
    case DType::Bool: case DType::U8: case DType::I8: case DType::U16: case DType::I16: case DType::U32:
    case DType::I32: case DType::U64: case DType::I64: case DType::F16: case DType::BF16: case DType::F32:
    case DType::F64: case DType::F8E4M3: case DType::F8E5M2: return true;
    default: return false;
  }
}

namespace detail {

/// Encodes a double into a binary floating-point format with `expBits` exponent bits and
/// `manBits` stored mantissa bits (IEEE layout, bias 2^(expBits−1)−1), rounding once to nearest,
/// ties to even. Returns the bit pattern in the low 1+expBits+manBits bits.
inline std::uint32_t encodeSmallFloat(double x, int expBits, int manBits) {
  std::uint64_t b;
  std::memcpy(&b, &x, 8);
  const std::uint32_t sign = std::uint32_t(b >> 63) << (expBits + manBits);
  const int dexp = int((b >> 52) & 0x7FF);
  std::uint64_t dman = b & ((std::uint64_t(1) << 52) - 1);
  const std::uint32_t expMask = (1u << expBits) - 1;
  if (dexp == 0x7FF) {
    if (dman == 0) return sign | (expMask << manBits);  // ±Inf
    // NaN: quiet bit set, keep the top payload bits.
    const std::uint32_t payload = std::uint32_t(dman >> (52 - manBits)) | (1u << (manBits - 1));
    return sign | (expMask << manBits) | (payload & ((1u << manBits) - 1));
  }
  if (dexp == 0 && dman == 0) return sign;  // ±0
  const int bias = (1 << (expBits - 1)) - 1;
  const int emin = 1 - bias, emax = bias;
  int e;
  std::uint64_t m;  // significand with the leading bit at position 52
  if (dexp == 0) {
    e = -1022;
    m = dman;
  } else {
    e = dexp - 1023;
    m = dman | (std::uint64_t(1) << 52);
  }
  int shift = 52 - manBits;
  if (e < emin) shift += emin - e;
  std::uint64_t q;
  if (shift >= 64) {
    q = 0;  // far below the smallest subnormal: rounds to zero
  } else {
    q = m >> shift;
    const std::uint64_t rem = m & ((std::uint64_t(1) << shift) - 1);
    const std::uint64_t half = std::uint64_t(1) << (shift - 1);
    if (rem > half || (rem == half && (q & 1))) ++q;
  }
  if (e < emin) {
    // Subnormal (or rounded up to the smallest normal: the encoding carries naturally).
    return sign | std::uint32_t(q);
  }
  if (q == (std::uint64_t(1) << (manBits + 1))) {
    q >>= 1;
    ++e;
  }
  if (e > emax) return sign | (expMask << manBits);  // overflow to ±Inf
  return sign | (std::uint32_t(e + bias) << manBits) | (std::uint32_t(q) & ((1u << manBits) - 1));
}

/// Decodes the bit pattern of a small IEEE-layout float format to double (exact).
inline double decodeSmallFloat(std::uint32_t bits, int expBits, int manBits) {
  const bool neg = (bits >> (expBits + manBits)) & 1u;
  const std::uint32_t expMask = (1u << expBits) - 1;
  const std::uint32_t ex = (bits >> manBits) & expMask;
  const std::uint32_t man = bits & ((1u << manBits) - 1);
  const int bias = (1 << (expBits - 1)) - 1;
  double v;
  if (ex == expMask) {
    v = man == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else if (ex == 0) {
    v = std::ldexp(double(man), 1 - bias - manBits);
  } else {
    v = std::ldexp(double(man | (1u << manBits)), int(ex) - bias - manBits);
  }
  return neg ? -v : v;
}

template <typename T>
inline T loadLE(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // the library targets little-endian hosts
  return v;
}

}  // namespace detail

/// Rounds a double to IEEE binary16 bits (nearest, ties to even; NaN/Inf preserved).
inline std::uint16_t doubleToHalf(double x) { return std::uint16_t(detail::encodeSmallFloat(x, 5, 10)); }
/// Rounds a double to bfloat16 bits (nearest, ties to even; NaN/Inf preserved).
inline std::uint16_t doubleToBf16(double x) { return std::uint16_t(detail::encodeSmallFloat(x, 8, 7)); }
/// Decodes IEEE binary16 bits exactly.
inline double halfToDouble(std::uint16_t h) { return detail::decodeSmallFloat(h, 5, 10); }
/// Decodes bfloat16 bits exactly.
inline double bf16ToDouble(std::uint16_t h) {
  std::uint32_t f = std::uint32_t(h) << 16;
  float v;
  std::memcpy(&v, &f, 4);
  return double(v);
}

/// Decodes an F8_E4M3 byte (OCP FP8 E4M3, "FN": bias 7, no infinities; S.1111.111 is NaN, so the
/// largest finite value is ±448; subnormals m·2⁻⁹). Exact in float.
inline float f8e4m3ToFloat(std::uint8_t b) {
  const int e = (b >> 3) & 15, m = b & 7;
  float v;
  if (e == 15 && m == 7) v = std::numeric_limits<float>::quiet_NaN();
  else if (e == 0) v = std::ldexp(float(m), -9);
  else v = std::ldexp(float(8 + m), e - 10);
  return (b & 0x80) ? -v : v;
}

/// Decodes an F8_E5M2 byte (OCP FP8 E5M2: IEEE layout, bias 15, exponent 31 is ±Inf (mantissa 0)
/// or NaN; largest finite ±57344; subnormals m·2⁻¹⁶). Exact in float.
inline float f8e5m2ToFloat(std::uint8_t b) { return float(detail::decodeSmallFloat(b, 5, 2)); }

namespace detail {
// 256-entry decoding table of an F8 dtype, built once.
template <int Kind>
inline const float* f8Table() {
  struct Table {
    float v[256];
    Table() {
      for (int i = 0; i < 256; ++i) v[i] = Kind == 0 ? f8e4m3ToFloat(std::uint8_t(i)) : f8e5m2ToFloat(std::uint8_t(i));
    }
  };
  static const Table table;
  return table.v;
}
}  // namespace detail

/// Decodes `count` little-endian elements of type `t` at `src` into `dst` (converted to Scalar).
/// Throws IoError for dtypes that have no real-number reading (see `isReadableAsReal`).
template <typename Scalar>
void decodeElements(DType t, const void* src, std::size_t count, Scalar* dst) {
  const unsigned char* p = static_cast<const unsigned char*>(src);
  switch (t) {
    case DType::F32:
      for (std::size_t i = 0; i < count; ++i) dst[i] = Scalar(detail::loadLE<float>(p + 4 * i));
      return;
    case DType::F64:
      for (std::size_t i = 0; i < count; ++i) dst[i] = Scalar(detail::loadLE<double>(p + 8 * i));
      return;
    case DType::F16:
      for (std::size_t i = 0; i < count; ++i) dst[i] = Scalar(halfToDouble(detail::loadLE<std::uint16_t>(p + 2 * i)));
      return;
    case DType::BF16:
      for (std::size_t i = 0; i < count; ++i) dst[i] = Scalar(bf16ToDouble(detail::loadLE<std::uint16_t>(p + 2 * i)));
      return;
    case DType::Bool:
      for (std::size_t i = 0; i < count; ++i) dst[i] = Scalar(p[i] != 0 ? 1 : 0);
      return;
    case DType::U8:
      for (std::size_t i = 0; i < count; ++i) dst[i] = Scalar(p[i]);
      return;
    case DType::I8:
      for (std::size_t i = 0; i < count; ++i) dst[i] = Scalar(detail::loadLE<std::int8_t>(p + i));
      return;
    case DType::U16:
      for (std::size_t i = 0; i < count; ++i) dst[i] = Scalar(detail::loadLE<std::uint16_t>(p + 2 * i));
      return;
    case DType::I16:
      for (std::size_t i = 0; i < count; ++i) dst[i] = Scalar(detail::loadLE<std::int16_t>(p + 2 * i));
      return;
    case DType::U32:
      for (std::size_t i = 0; i < count; ++i) dst[i] = Scalar(detail::loadLE<std::uint32_t>(p + 4 * i));
      return;
    case DType::I32:
      for (std::size_t i = 0; i < count; ++i) dst[i] = Scalar(detail::loadLE<std::int32_t>(p + 4 * i));
      return;
    case DType::U64:
      for (std::size_t i = 0; i < count; ++i) dst[i] = Scalar(detail::loadLE<std::uint64_t>(p + 8 * i));
      return;
    case DType::I64:
      for (std::size_t i = 0; i < count; ++i) dst[i] = Scalar(detail::loadLE<std::int64_t>(p + 8 * i));
      return;
    case DType::F8E4M3: {
      const float* table = detail::f8Table<0>();
      for (std::size_t i = 0; i < count; ++i) dst[i] = Scalar(table[p[i]]);
      return;
    }
    case DType::F8E5M2: {
      const float* table = detail::f8Table<1>();
      for (std::size_t i = 0; i < count; ++i) dst[i] = Scalar(table[p[i]]);
      return;
    }
    default:
      throw IoError(std::string("dtype ") + dtypeName(t) + " cannot be converted to a real matrix (read its raw bytes instead)");
  }
}

/// Encodes `count` values into little-endian elements of float dtype `t` (F16, BF16, F32, F64)
/// at `dst`, rounding once to nearest-even. Throws InvalidArgument for other dtypes.
template <typename Scalar>
void encodeElements(DType t, const Scalar* src, std::size_t count, void* dst) {
  unsigned char* p = static_cast<unsigned char*>(dst);
  switch (t) {
    case DType::F32:
      for (std::size_t i = 0; i < count; ++i) {
        const float v = float(src[i]);
        std::memcpy(p + 4 * i, &v, 4);
      }
      return;
    case DType::F64:
      for (std::size_t i = 0; i < count; ++i) {
        const double v = double(src[i]);
        std::memcpy(p + 8 * i, &v, 8);
      }
      return;
    case DType::F16:
      for (std::size_t i = 0; i < count; ++i) {
        const std::uint16_t v = doubleToHalf(double(src[i]));
        std::memcpy(p + 2 * i, &v, 2);
      }
      return;
    case DType::BF16:
      for (std::size_t i = 0; i < count; ++i) {
        const std::uint16_t v = doubleToBf16(double(src[i]));
        std::memcpy(p + 2 * i, &v, 2);
      }
      return;
    default:
      throw InvalidArgument(std::string("encodeElements: dtype ") + dtypeName(t) +
                            " is not a writable float type; expected F16, BF16, F32 or F64");
  }
}

}  // namespace io
}  // namespace wproj
