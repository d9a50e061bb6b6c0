// Which kernel takes each of a step's products (weight-streaming kernels, cuBLAS on split,
// bf16 or fp16 rows) and the residual adds after them.
#include "cuda/engine_impl.hpp"

namespace eyrie {

void CudaEngine::Impl::keep_rows(void* buf, int64_t width, const int32_t* kept, int64_t np) {
  const int64_t elem = acts == cuda::Activations::fp32_rows ? 4 : 2;
  keep_row_bytes(buf, width * elem, kept, acts == cuda::Activations::split_halves ? 2 * np : np);
}

void CudaEngine::Impl::keep_row_bytes(void* buf, int64_t row_bytes, const int32_t* kept, int64_t count) {
  cuda::gather_rows(buf, kept, count, row_bytes, f.get(), stream);
  EYRIE_CUDA_CHECK(cudaMemcpyAsync(buf, f.get(), count * row_bytes, cudaMemcpyDeviceToDevice, stream));
}

void CudaEngine::Impl::gemm_rows(const bf16* xin, int64_t n, const bf16* w, int64_t out_dim, int64_t in_dim,
                                 float* yout, bool on_mlp_stream, bool early, cuda::WeightType w_type) {
  product(on_mlp_stream ? mlp_blas : blas, on_mlp_stream ? mlp_stream : stream, xin, split ? 2 * n : n, w, out_dim,
          in_dim, yout, split, early, w_type);
}

std::optional<cuda::GemvTiling> CudaEngine::Impl::streaming_tiling(int64_t rows, int64_t in_dim, const bf16* xin,
                                                                   const bf16* w, cuda::WeightType w_type) const {
  std::optional<cuda::GemvTiling> t;
  if ((rows <= opt.gemv_rows_max || acts == cuda::Activations::fp32_rows) && cuda::gemv_fits(rows, in_dim, xin, w))
    t = cuda::GemvTiling{};
  else if (rows <= opt.gemv_mma_rows_max && w_type == cuda::WeightType::bfloat16 &&
           cuda::gemv_mma_fits(rows, in_dim, xin, w))
    t = cuda::kGemvMmaTiling;
  if (t) t->early_start = rows >= opt.gemv_early_start_rows_min;
  return t;
}

void CudaEngine::Impl::product(cublasHandle_t handle, cudaStream_t s, const bf16* xin, int64_t rows, const bf16* w,
                               int64_t out_dim, int64_t in_dim, float* yout, bool pairs, bool early,
                               cuda::WeightType w_type) {
  if (auto t = streaming_tiling(rows, in_dim, xin, w, w_type)) {
    t->early_start = t->early_start || early;
    if (pairs)
      cuda::gemv_pairs(xin, rows, w, out_dim, in_dim, yout, s, *t, acts, w_type);
    else
      cuda::gemv(xin, rows, w, out_dim, in_dim, yout, s, *t, w_type);
    return;
  }
  if (acts == cuda::Activations::fp32_rows) throw Error("CUDA engine: a product of fp32 rows fell to cuBLAS");
  if (w_type != cuda::WeightType::bfloat16) throw Error("CUDA engine: a product of fp16 weights on bf16 activations");
  blas_product(handle, xin, rows, w, out_dim, in_dim, yout, CUDA_R_32F);
}

bool CudaEngine::Impl::adds_into_x(const Linear& l, const bf16* xin, int64_t n) const {
  return !split && !comm && !l.has_bias && !streaming_tiling(n, l.in, xin, l.w.get());
}

void CudaEngine::Impl::add_product_into_x(const void* xin, int64_t n, const Linear& l, bool on_mlp_stream) {
  blas_product(on_mlp_stream ? mlp_blas : blas, xin, n, l.w.get(), l.out, l.in, x.get(), CUDA_R_32F, 1.f,
               l.type == cuda::WeightType::float16 ? CUDA_R_16F : CUDA_R_16BF);
}

void CudaEngine::Impl::blas_product(cublasHandle_t handle, const void* xin, int64_t rows, const void* w,
                                    int64_t out_dim, int64_t in_dim, void* y, cudaDataType y_type, float beta,
                                    cudaDataType in_type) {
  const float alpha = 1.f;
  EYRIE_CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(out_dim), static_cast<int>(rows),
                                  static_cast<int>(in_dim), &alpha, w, in_type, static_cast<int>(in_dim), xin, in_type,
                                  static_cast<int>(in_dim), &beta, y, y_type, static_cast<int>(out_dim),
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

std::optional<cuda::GemvTiling> CudaEngine::Impl::summed_outputs(const Layer& L, int64_t n) const {
  if (!opt.summed_output_products || !cfg.parallel_attn || comm || mlp_on_f16_rows()) return std::nullopt;
  const int64_t rows = split ? 2 * n : n;
  const auto t = streaming_tiling(rows, ffn, fb.get(), L.h4_to_h.w.get(), L.h4_to_h.type);
  const auto td = streaming_tiling(rows, L.dense.in, attn.get(), L.dense.w.get(), L.dense.type);
  if (!t || !td || t->tensor_cores || td->tensor_cores) return std::nullopt;
  return t;
}

void CudaEngine::Impl::sum_outputs(const Layer& L, int64_t n, const cuda::GemvTiling& t) {
  const cuda::GemvProduct p{.term = {attn.get(), L.dense.w.get(), L.dense.in, L.dense.type},
                            .term2 = {fb.get(), L.h4_to_h.w.get(), ffn, L.h4_to_h.type},
                            .out_dim = cfg.hidden_size,
                            .y = y.get(),
                            .bias = L.dense.bias(),
                            .bias2 = L.h4_to_h.bias()};
  cuda::gemv_products(split ? 2 * n : n, acts, p, nullptr, stream, t);
}

void CudaEngine::Impl::mlp(const Layer& L, const bf16* in, int64_t n, bool on_mlp_stream, bool output, bool beside_qkv,
                           bool into_x) {
  prof.mark("gemm_mlp", stream);
  const int64_t rows = split ? 2 * n : n;
  if (mlp_on_f16_rows()) {
    // The input's fp16 rows, the product in fp32, its GELU written in fp16.
    cudaStream_t s = on_mlp_stream ? mlp_stream : stream;
    blas_product(on_mlp_stream ? mlp_blas : blas, in16.get(), n, L.h_to_4h.w.get(), ffn, cfg.hidden_size, f.get(),
                 CUDA_R_32F, 0.f, CUDA_R_16F);
    prof.mark("gelu", stream);
    cuda::bias_gelu_f16(f.get(), L.h_to_4h.bias(), n, ffn, reinterpret_cast<cuda::f16*>(fb.get()), s);
  } else if (auto t = streaming_tiling(rows, cfg.hidden_size, in, L.h_to_4h.w.get(), L.h_to_4h.type)) {
    // A few decode rows: the GELU rides on the weight-streaming kernel's epilogue. Beside
    // query_key_value, which reads the same normed input (see GemvTiling::beside_previous).
    t->beside_previous = beside_qkv;
    cuda::gemv_bias_gelu(in, rows, L.h_to_4h.w.get(), ffn, cfg.hidden_size, L.h_to_4h.bias(), fb.get(),
                         on_mlp_stream ? mlp_stream : stream, *t, acts, L.h_to_4h.type);
  } else if (!split) {
    // bf16 activations on cuBLAS: the product is written in bf16, as transformers' bf16 Linear
    // writes it, and the GELU runs in place: half the bytes of an fp32 output and its re-read.
    blas_product(on_mlp_stream ? mlp_blas : blas, in, n, L.h_to_4h.w.get(), ffn, cfg.hidden_size, fb.get(),
                 CUDA_R_16BF);
    prof.mark("gelu", stream);
    cuda::bias_gelu_inplace(fb.get(), L.h_to_4h.bias(), n, ffn, on_mlp_stream ? mlp_stream : stream);
  } else {
    gemm_rows(in, n, L.h_to_4h.w.get(), ffn, cfg.hidden_size, f.get(), on_mlp_stream);
    prof.mark("gelu", stream);
    cuda::bias_gelu(f.get(), L.h_to_4h.bias(), n, ffn, fb.get(), on_mlp_stream ? mlp_stream : stream, split);
  }
  if (output) mlp_down(L, n, on_mlp_stream, into_x);
}

void CudaEngine::Impl::mlp_down(const Layer& L, int64_t n, bool on_mlp_stream, bool into_x) {
  prof.mark("gemm_mlp", stream);
  if (into_x) {
    add_product_into_x(fb.get(), n, L.h4_to_h, on_mlp_stream);
  } else if (mlp_on_f16_rows()) {
    // y without low halves: the residual that adds it is told so.
    blas_product(on_mlp_stream ? mlp_blas : blas, fb.get(), n, L.h4_to_h.w.get(), cfg.hidden_size, ffn, y.get(),
                 CUDA_R_32F, 0.f, CUDA_R_16F);
  } else {
    gemm_rows(fb.get(), n, L.h4_to_h.w.get(), cfg.hidden_size, ffn, y.get(), on_mlp_stream, false, L.h4_to_h.type);
  }
}

void CudaEngine::Impl::add_to_residual(const cuda::PendingResidual& r, int64_t n) {
  const int64_t h = cfg.hidden_size;
  if (!comm) {
    cuda::residual_add(x.get(), r.a, r.a_bias, r.c, r.c_bias, n, h, stream, r.halves, r.c_halves);
    return;
  }
  if (opt.peer_exchange && opt.peer_exchange->fits(n * h)) {
    prof.mark("all_reduce", stream);
    opt.peer_exchange->residual_all_reduce(comm->rank(), x.get(), r.a, r.a_bias, r.c, r.c_bias, n, h, r.halves, stream,
                                           r.c_halves);
    prof.mark("residual", stream);
    return;
  }
  EYRIE_CUDA_CHECK(cudaMemsetAsync(partial.get(), 0, n * h * sizeof(float), stream));
  cuda::residual_add(partial.get(), r.a, r.a_bias, r.c, r.c_bias, n, h, stream, r.halves, r.c_halves);
  prof.mark("all_reduce", stream);
  comm->all_reduce_sum(partial.get(), static_cast<std::size_t>(n * h), stream);
  prof.mark("residual", stream);
  cuda::add_inplace(x.get(), partial.get(), n * h, stream);
}

void CudaEngine::Impl::gather_logits(int64_t np, bool halves) {
  const int64_t vs = vocab_rows, vocab = cfg.vocab_size;
  cuda::combine_halves(logits_split.get(), np, vs, logits_part.get(), stream, halves);
  prof.mark("all_gather", stream);
  comm->all_gather(logits_part.get(), logits_all.get(), static_cast<std::size_t>(np * vs), stream);
  prof.mark("lm_head", stream);
  for (int r = 0; r < plan.degree; ++r) {
    const int64_t begin = r * vs, count = std::max<int64_t>(0, std::min(vs, vocab - begin));
    if (count == 0) continue;
    EYRIE_CUDA_CHECK(cudaMemcpy2DAsync(logits.get() + begin, vocab * sizeof(float), logits_all.get() + r * np * vs,
                                       vs * sizeof(float), count * sizeof(float), np, cudaMemcpyDeviceToDevice,
                                       stream));
  }
}

}  // namespace eyrie
