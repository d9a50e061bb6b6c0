// Head, MLP and vocabulary splits. With at least as many KV heads as shards, whole KV groups go
// to shards (8 groups over 3 shards: 3 + 3 + 2); with fewer, query heads are split as evenly as
// possible and each shard keeps the KV heads its queries read (Falcon-7B's 71 heads over 2
// shards: 36 + 35, the one KV head on both).
#include "model/parallel/shard_plan.hpp"

#include <algorithm>
#include <string>

#include "model/error.hpp"

namespace eyrie {
namespace {

struct Range {
  int64_t begin, count;
};

// Part i of n items over `parts`, the first n % parts parts one larger.
Range balanced(int64_t n, int64_t parts, int64_t i) {
  const int64_t base = n / parts, extra = n % parts;
  return {i * base + (i < extra ? i : extra), base + (i < extra ? 1 : 0)};
}

}  // namespace

ShardPlan ShardPlan::make(const FalconConfig& c, int degree, int rank) {
  if (degree < 1) throw InvalidArgument("tensor_parallel_degree must be at least 1, got " + std::to_string(degree));
  if (rank < 0 || rank >= degree)
    throw InvalidArgument("shard rank " + std::to_string(rank) + " is outside 0.." + std::to_string(degree - 1));
  if (degree > c.num_heads)
    throw InvalidArgument("tensor_parallel_degree " + std::to_string(degree) + " exceeds the model's " +
                          std::to_string(c.num_heads) + " attention heads: every shard needs at least one");
  ShardPlan p;
  p.rank = rank;
  p.degree = degree;
  p.group = c.group_size();
  if (degree <= c.num_kv_heads) {
    const Range kv = balanced(c.num_kv_heads, degree, rank);
    p.kv_begin = kv.begin;
    p.kv_count = kv.count;
    p.q_begin = kv.begin * p.group;
    p.q_count = kv.count * p.group;
  } else {
    const Range q = balanced(c.num_heads, degree, rank);
    p.q_begin = q.begin;
    p.q_count = q.count;
    p.kv_begin = q.begin / p.group;
    p.kv_count = (q.begin + q.count - 1) / p.group - p.kv_begin + 1;
  }
  const Range f = balanced(c.ffn_hidden_size, degree, rank);
  p.ffn_begin = f.begin;
  p.ffn_count = f.count;
  p.vocab_shard = (c.vocab_size + degree - 1) / degree;
  p.vocab_begin = rank * p.vocab_shard;
  p.vocab_count = std::max<int64_t>(0, std::min(p.vocab_shard, c.vocab_size - p.vocab_begin));
  return p;
}

}  // namespace eyrie
