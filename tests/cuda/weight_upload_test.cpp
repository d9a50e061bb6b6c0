// Weights staged through pinned buffers arrive converted exactly as the host converts them,
// across chunk boundaries and for every stored type, with progress reaching the total.
#include <gtest/gtest.h>

#if EYRIE_HAS_CUDA
#include <random>

#include "cuda/cuda_engine.hpp"
#include "cuda/weight_upload.hpp"
#include "model/dtype.hpp"
#include "tests/cuda/device_buffer.hpp"

namespace eyrie {
namespace {

using test::Device;

struct Stored {
  std::vector<uint16_t> half;
  std::vector<float> full;
  TensorView view;
};

// n values of type t, with a view over them as the loader would give it.
Stored stored(DType t, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-3.f, 3.f);
  Stored s;
  s.full.resize(static_cast<std::size_t>(n));
  for (float& x : s.full) x = u(rng);
  if (t != DType::f32) {
    s.half.resize(s.full.size());
    for (std::size_t i = 0; i < s.full.size(); ++i) s.half[i] = t == DType::bf16 ? f32_to_bf16(s.full[i]) : f32_to_f16(s.full[i]);
  }
  s.view.name = std::string("t").append(std::to_string(seed));
  s.view.dtype = t;
  s.view.shape = {n};
  s.view.data = t == DType::f32 ? static_cast<const void*>(s.full.data()) : s.half.data();
  s.view.nbytes = static_cast<std::size_t>(n) * dtype_size(t);
  return s;
}

TEST(CudaWeightUpload, ConvertsEveryTypeAcrossChunks) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  std::vector<std::size_t> reported;
  {
    // 4 KiB chunks on 2 buffers: every tensor but the smallest spans several chunks and reuses
    // each buffer more than once.
    cuda::StagedUpload up(stream, [&](std::size_t d) { reported.push_back(d); }, 4096, 2);
    uint32_t seed = 1;
    std::size_t expected_bytes = 0;
    for (DType t : {DType::bf16, DType::f16, DType::f32}) {
      for (int64_t n : {1, 1000, 2048, 2049, 40000}) {
        SCOPED_TRACE(std::string(dtype_name(t)) + " n " + std::to_string(n));
        Stored s = stored(t, n, seed++);
        std::vector<float> f(static_cast<std::size_t>(n));
        to_f32(t, s.view.data, f.data(), f.size());
        Device<uint16_t> as_bf16(static_cast<std::size_t>(n));
        Device<float> as_f32(static_cast<std::size_t>(n));
        up.to_bf16(as_bf16.p, s.view);
        up.to_f32(as_f32.p, s.view);
        up.finish();
        expected_bytes += static_cast<std::size_t>(n) * 6;
        EXPECT_EQ(up.bytes_done(), expected_bytes);
        const auto got16 = as_bf16.get(f.size());
        const auto got32 = as_f32.get(f.size());
        for (std::size_t i = 0; i < f.size(); ++i) {
          ASSERT_EQ(got16[i], f32_to_bf16(f[i])) << "element " << i;
          ASSERT_EQ(got32[i], f[i]) << "element " << i;
        }
      }
    }
    ASSERT_FALSE(reported.empty());
    EXPECT_EQ(reported.back(), expected_bytes);
    for (std::size_t i = 1; i < reported.size(); ++i) EXPECT_GT(reported[i], reported[i - 1]);
  }
  cudaStreamDestroy(stream);
}

// fp16 matrices (the MLP's with fp16_mlp): each stored type converted as the host rounds it, and
// a tensor with values past fp16's range refused, naming it, the count and the largest.
TEST(CudaWeightUpload, ConvertsToFp16AndRefusesValuesPastItsRange) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  {
    cuda::StagedUpload up(stream, {}, 4096, 2, 2);
    uint32_t seed = 40;
    for (DType t : {DType::bf16, DType::f16, DType::f32}) {
      SCOPED_TRACE(dtype_name(t));
      Stored s = stored(t, 5000, seed++);
      std::vector<float> f(5000);
      to_f32(t, s.view.data, f.data(), f.size());
      Device<uint16_t> d(f.size());
      up.to_f16(d.p, s.view);
      up.finish();
      const auto got = d.get(f.size());
      for (std::size_t i = 0; i < f.size(); ++i) ASSERT_EQ(got[i], f32_to_f16(f[i])) << "element " << i;
    }
    for (DType t : {DType::bf16, DType::f32}) {
      SCOPED_TRACE(dtype_name(t));
      Stored s = stored(t, 3000, seed++);
      auto put = [&](std::size_t i, float v) {
        s.full[i] = v;
        if (t == DType::bf16) s.half[i] = f32_to_bf16(v);
      };
      put(7, 65280.f);  // within fp16 (and bf16): kept
      put(100, -70000.f);
      put(2999, 1e6f);
      Device<uint16_t> d(3000);
      try {
        up.to_f16(d.p, s.view);
        up.finish();
        FAIL() << "no error";
      } catch (const InvalidArgument& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find("'" + s.view.name + "'"), std::string::npos) << m;
        EXPECT_NE(m.find("has 2 values beyond fp16's range"), std::string::npos) << m;
        EXPECT_NE(m.find(t == DType::bf16 ? "999424" : "1000000"), std::string::npos) << m;
      }
    }
  }
  cudaStreamDestroy(stream);
}

TEST(CudaWeightUpload, RefusesAViewWhoseBytesDoNotMatchItsShape) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  {
    cuda::StagedUpload up(stream);
    EXPECT_THROW(cuda::StagedUpload(stream, {}, 8, 2), InvalidArgument);
    Stored s = stored(DType::bf16, 100, 7);
    s.view.nbytes = 150;
    Device<uint16_t> d(100);
    try {
      up.to_bf16(d.p, s.view);
      FAIL() << "no error";
    } catch (const Error& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("'t7'"), std::string::npos) << m;
      EXPECT_NE(m.find("150 bytes"), std::string::npos) << m;
    }
  }
  cudaStreamDestroy(stream);
}

}  // namespace
}  // namespace eyrie
#endif
