// Stores of activation rows in the forms the products after them read (Activations): bf16,
// split-bf16 halves, fp32 rows in the halves' bytes, fp16 rows or fp16 halves; and the e4m3
// rests of fp16 rows for query_key_value's fp8 product (cuda/fp8.hpp).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include "cuda/kernels.hpp"

namespace eyrie::cuda {

// fp16 of v, past its range the largest finite value of v's sign (NaN stays NaN): an fp16
// product's input that overflowed would turn its every output to infinity or NaN.
__device__ __forceinline__ __half saturated_f16(float v) {
  constexpr float kMax = 65504.f;
  return __float2half_rn(isnan(v) ? v : fminf(fmaxf(v, -kMax), kMax));
}

// Four floats as saturated fp16, stored 8 bytes at a time (dst 8-byte aligned).
__device__ inline void put_f16x4(__half* dst, float4 v) {
  const __half2 a = __halves2half2(saturated_f16(v.x), saturated_f16(v.y));
  const __half2 b = __halves2half2(saturated_f16(v.z), saturated_f16(v.w));
  *reinterpret_cast<uint2*>(dst) =
      make_uint2(*reinterpret_cast<const uint32_t*>(&a), *reinterpret_cast<const uint32_t*>(&b));
}

__device__ inline uint32_t as_u32(__nv_bfloat162 v) {
  return *reinterpret_cast<const uint32_t*>(&v);
}

// x, y as packed bf16 pairs: hi = bf16(x, y), lo = bf16 of what hi left out.
__device__ inline void split2(float x, float y, uint32_t& hi, uint32_t& lo) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
  hi = as_u32(h);
  lo = as_u32(__floats2bfloat162_rn(x - __low2float(h), y - __high2float(h)));
}

// Four floats rounded to bf16, stored 8 bytes at a time (dst 8-byte aligned).
__device__ inline void put_bf16x4(bf16* hi, float4 v) {
  *reinterpret_cast<uint2*>(hi) =
      make_uint2(as_u32(__floats2bfloat162_rn(v.x, v.y)), as_u32(__floats2bfloat162_rn(v.z, v.w)));
}

// Four floats as bf16 halves, stored 8 bytes at a time (dst 8-byte aligned).
__device__ inline void put_split4(bf16* hi, bf16* lo, float4 v) {
  uint32_t h01, l01, h23, l23;
  split2(v.x, v.y, h01, l01);
  split2(v.z, v.w, h23, l23);
  *reinterpret_cast<uint2*>(hi) = make_uint2(h01, h23);
  *reinterpret_cast<uint2*>(lo) = make_uint2(l01, l23);
}

// Four floats as fp16 halves (Activations::f16_halves), stored 8 bytes at a time (dst 8-byte
// aligned).
__device__ inline void put_f16_halves4(__half* hi, __half* lo, float4 v) {
  const __half2 a = __halves2half2(saturated_f16(v.x), saturated_f16(v.y));
  const __half2 b = __halves2half2(saturated_f16(v.z), saturated_f16(v.w));
  *reinterpret_cast<uint2*>(hi) =
      make_uint2(*reinterpret_cast<const uint32_t*>(&a), *reinterpret_cast<const uint32_t*>(&b));
  put_f16x4(lo, make_float4(v.x - __low2float(a), v.y - __high2float(a), v.z - __low2float(b), v.w - __high2float(b)));
}

// Element `at` of a [rows, cols] activation whose split low halves start lo_offset (rows *
// cols) further on.
__device__ inline void store_activation(bf16* out, int64_t lo_offset, int64_t at, float v, Activations form) {
  if (form == Activations::fp32_rows) {
    reinterpret_cast<float*>(out)[at] = v;
    return;
  }
  if (form == Activations::f16_rows || form == Activations::f16_halves) {
    const __half hi = saturated_f16(v);
    reinterpret_cast<__half*>(out)[at] = hi;
    if (form == Activations::f16_halves)
      reinterpret_cast<__half*>(out)[lo_offset + at] = saturated_f16(v - __half2float(hi));
    return;
  }
  const bf16 hi = __float2bfloat16(v);
  out[at] = hi;
  if (form == Activations::split_halves) out[lo_offset + at] = __float2bfloat16(v - __bfloat162float(hi));
}

// Elements at, at + 1 (at even), one store each.
__device__ inline void store_activation2(bf16* out, int64_t lo_offset, int64_t at, float v0, float v1,
                                         Activations form) {
  if (form == Activations::fp32_rows) {
    *reinterpret_cast<float2*>(reinterpret_cast<float*>(out) + at) = make_float2(v0, v1);
    return;
  }
  if (form == Activations::f16_rows || form == Activations::f16_halves) {
    const __half2 hi = __halves2half2(saturated_f16(v0), saturated_f16(v1));
    *reinterpret_cast<__half2*>(reinterpret_cast<__half*>(out) + at) = hi;
    if (form == Activations::f16_halves)
      *reinterpret_cast<__half2*>(reinterpret_cast<__half*>(out) + lo_offset + at) =
          __halves2half2(saturated_f16(v0 - __low2float(hi)), saturated_f16(v1 - __high2float(hi)));
    return;
  }
  uint32_t hi, lo;
  split2(v0, v1, hi, lo);
  *reinterpret_cast<uint32_t*>(out + at) = hi;
  if (form == Activations::split_halves) *reinterpret_cast<uint32_t*>(out + lo_offset + at) = lo;
}

// Elements at .. at + 3 (at a multiple of 4), one store each.
__device__ inline void store_activation4(bf16* out, int64_t lo_offset, int64_t at, float4 v, Activations form) {
  if (form == Activations::fp32_rows)
    *reinterpret_cast<float4*>(reinterpret_cast<float*>(out) + at) = v;
  else if (form == Activations::split_halves)
    put_split4(out + at, out + lo_offset + at, v);
  else if (form == Activations::f16_rows)
    put_f16x4(reinterpret_cast<__half*>(out) + at, v);
  else if (form == Activations::f16_halves)
    put_f16_halves4(reinterpret_cast<__half*>(out) + at, reinterpret_cast<__half*>(out) + lo_offset + at, v);
  else
    put_bf16x4(out + at, v);
}

// The e4m3 rests of four values stored as fp16 rows: (v - fp16(v)) scale, saturated, 4 bytes at
// a time (dst 4-byte aligned).
__device__ inline void put_rest4(uint8_t* dst, float4 v, float scale) {
  auto rest = [&](float x) { return (x - __half2float(saturated_f16(x))) * scale; };
  const __nv_fp8x2_storage_t a = __nv_cvt_float2_to_fp8x2(make_float2(rest(v.x), rest(v.y)), __NV_SATFINITE, __NV_E4M3);
  const __nv_fp8x2_storage_t b = __nv_cvt_float2_to_fp8x2(make_float2(rest(v.z), rest(v.w)), __NV_SATFINITE, __NV_E4M3);
  *reinterpret_cast<uint32_t*>(dst) = static_cast<uint32_t>(a) | (static_cast<uint32_t>(b) << 16);
}

__device__ inline uint8_t rest8(float v, float scale) {
  return __nv_cvt_float_to_fp8((v - __half2float(saturated_f16(v))) * scale, __NV_SATFINITE, __NV_E4M3);
}

}  // namespace eyrie::cuda
