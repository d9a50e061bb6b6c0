// Error decoding for CUDA and cuBLAS.
#include "cuda/check.hpp"

namespace eyrie::cuda {

void throw_cuda(cudaError_t e, const char* what, const char* file, int line) {
  throw Error(std::string("CUDA error ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") in " +
              what + " at " + file + ":" + std::to_string(line));
}

void throw_cublas(cublasStatus_t s, const char* what, const char* file, int line) {
  throw Error(std::string("cuBLAS error ") + cublasGetStatusName(s) + " (" + cublasGetStatusString(s) +
              ") in " + what + " at " + file + ":" + std::to_string(line));
}

}  // namespace eyrie::cuda
