// gather_rows, which moves a prompt's picked rows to the front of the last layer's buffers:
// every byte of the picked rows in their order, with 16-byte words and with 4-byte ones (rows
// not a multiple of 16 bytes, or a source that is not 16-byte aligned), repeated picks and a
// row picked onto itself included; rows it cannot copy are refused.
#include <gtest/gtest.h>

#if EYRIE_HAS_CUDA
#include <cstdint>
#include <random>
#include <vector>

#include "cuda/cuda_engine.hpp"
#include "cuda/kernels.hpp"
#include "model/error.hpp"
#include "tests/cuda/device_buffer.hpp"

namespace eyrie {
namespace {

using test::Device;

void check_gather(int64_t rows, int64_t row_words, int64_t src_offset_words, const std::vector<int32_t>& picks) {
  SCOPED_TRACE("rows " + std::to_string(rows) + " words " + std::to_string(row_words) + " offset " +
               std::to_string(src_offset_words));
  std::mt19937 rng(static_cast<uint32_t>(rows * 131 + row_words));
  std::vector<uint32_t> src(src_offset_words + rows * row_words);
  for (auto& w : src) w = rng();
  Device<uint32_t> d_src(src);
  Device<int32_t> d_picks(picks);
  const auto count = static_cast<int64_t>(picks.size());
  Device<uint32_t> d_dst(std::vector<uint32_t>(count * row_words, 0xdeadbeefu));
  cuda::gather_rows(d_src.p + src_offset_words, d_picks.p, count, row_words * 4, d_dst.p, nullptr);
  EYRIE_CUDA_CHECK(cudaDeviceSynchronize());
  const auto got = d_dst.get(count * row_words);
  for (int64_t k = 0; k < count; ++k)
    for (int64_t i = 0; i < row_words; ++i)
      ASSERT_EQ(got[k * row_words + i], src[src_offset_words + picks[k] * row_words + i])
          << "pick " << k << " word " << i;
}

TEST(CudaGatherRows, CopiesThePickedRowsInOrder) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  check_gather(2048, 2272, 0, {2047});             // a prompt's last row, 16-byte words
  check_gather(300, 2272, 0, {0, 5, 5, 299, 17});  // repeats, out of order
  check_gather(64, 71 * 16, 0, {3, 4, 63});        // a row of 71 bf16 heads of 32
  check_gather(10, 3, 0, {9, 0, 4});               // 12-byte rows: 4-byte words
  check_gather(10, 8, 1, {1, 2, 9});               // a source off 16-byte alignment
  check_gather(5, 100000, 0, {4, 0});              // rows of many column blocks
}

TEST(CudaGatherRows, RefusesRowsThatAreNotWholeWords) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  EXPECT_THROW(cuda::gather_rows(nullptr, nullptr, 1, 6, nullptr, nullptr), InvalidArgument);
  EXPECT_THROW(cuda::gather_rows(nullptr, nullptr, 1, 0, nullptr, nullptr), InvalidArgument);
}

}  // namespace
}  // namespace eyrie
#endif
