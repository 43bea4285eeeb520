// BLAS shared by padbench's C++ CPU kernels: MKL as exported by libtorch_cpu (x86 wheels).
// Called inside a parallel region, MKL runs single-threaded.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <type_traits>

extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*,
            const int*, const float*, const int*, const float*, float*, const int*);
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
            const int*, const double*, const int*, const double*, double*, const int*);
size_t cblas_sgemm_pack_get_size(int identifier, int m, int n, int k);
void cblas_sgemm_pack(int layout, int identifier, int trans, int m, int n, int k, float alpha, const float* src,
                      int ld, float* dest);
void cblas_sgemm_compute(int layout, int transa, int transb, int m, int n, int k, const float* a, int lda,
                         const float* b, int ldb, float beta, float* c, int ldc);
}

namespace padbench {

// Row-major C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C, as column-major C^T = op(B)^T op(A)^T.
template <typename T>
void gemm_rm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
             int64_t ldb, T beta, T* c, int64_t ldc) {
  const char tA = ta ? 'T' : 'N', tB = tb ? 'T' : 'N';
  const int M = static_cast<int>(n), N = static_cast<int>(m), K = static_cast<int>(k);
  const int LDA = static_cast<int>(ldb), LDB = static_cast<int>(lda), LDC = static_cast<int>(ldc);
  if constexpr (std::is_same_v<T, float>) {
    sgemm_(&tB, &tA, &M, &N, &K, &alpha, b, &LDA, a, &LDB, &beta, c, &LDC);
  } else {
    dgemm_(&tB, &tA, &M, &N, &K, &alpha, b, &LDA, a, &LDB, &beta, c, &LDC);
  }
}

// A weight W [n, k] (nn.Linear's layout) applied as C[m, n] = A[m, k] @ W^T + beta * C, many
// times over row blocks of at most `max_rows`. For float32 W is packed once into MKL's internal
// panel format, so the block GEMMs skip re-packing it every call (measured: the dense block's
// GEMMs 18.2 against 21.1 ms for 4634 tokens of the default model); float64 calls dgemm directly.
template <typename T>
class PackedWeight {
 public:
  PackedWeight(const T* w, int64_t n, int64_t k, int64_t max_rows) : w_(w), n_(n), k_(k) {
    if constexpr (std::is_same_v<T, float>) {
      const size_t bytes = cblas_sgemm_pack_get_size(kB, int(max_rows), int(n), int(k));
      packed_.reset(new float[bytes / sizeof(float) + 1]);
      cblas_sgemm_pack(kRowMajor, kB, kTrans, int(max_rows), int(n), int(k), 1.f, w, int(k), packed_.get());
    }
  }

  void apply(int64_t m, const T* a, int64_t lda, T beta, T* c, int64_t ldc) const {
    if constexpr (std::is_same_v<T, float>) {
      cblas_sgemm_compute(kRowMajor, kNoTrans, kPacked, int(m), int(n_), int(k_), a, int(lda), packed_.get(),
                          int(k_), beta, c, int(ldc));
    } else {
      gemm_rm<T>(false, true, m, n_, k_, T(1), a, lda, w_, k_, beta, c, ldc);
    }
  }

 private:
  // CBLAS enum values (mkl_cblas.h).
  static constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112, kPacked = 151, kB = 162;
  const T* w_;
  int64_t n_, k_;
  std::unique_ptr<float[]> packed_;
};

}  // namespace padbench
