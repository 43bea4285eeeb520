// padbench's CPU varlen attention: forward and backward over packed [T, H, D] tensors.
//
// Why this exists: calling PyTorch's CPU flash kernel once per distinct length opens one
// OpenMP region per call and runs small blocked GEMMs; a batch of 32 uniform lengths made 32
// regions per layer at ~100 GFLOP/s. Here one parallel region covers every (sequence, head,
// query block) of the batch, the most expensive units first, handed out dynamically, and each
// unit is two BLAS calls on strided views of the packed tensors plus a vectorised softmax
// over whole rows (every key of a row is in one buffer, so no online rescaling).
//
// Layout: q, k, v, grad_out are [T, H, D] with unit stride on D and any row/head strides (a
// view of a fused QKV projection works without a copy). out, dq, dk, dv are fresh [T, H, D];
// lse is [H, T] in float32 for float32 inputs and float64 for float64 inputs. An empty
// sequence owns no rows and is skipped.
//
// BLAS: blas.h (MKL as exported by libtorch_cpu).

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <memory>
#include <tuple>
#include <vector>

#include "blas.h"

namespace {

using padbench::gemm_rm;

// row[0:n] <- exp(row - max(row)); returns (max, sum of the exponentials). The ragged tail of
// a row is one masked vector rather than a scalar std::exp loop (measured 2-4% of the whole
// forward on uniform and lognormal batches, where most rows are not a multiple of 16 long).
inline std::pair<float, float> exp_row(float* row, int64_t n) {
  using Vec = at::vec::Vectorized<float>;
  constexpr int64_t W = Vec::size();
  const int64_t full = n - n % W, tail = n - full;
  const Vec lowest(-std::numeric_limits<float>::infinity());
  Vec vmax = lowest;
  for (int64_t c = 0; c < full; c += W) vmax = at::vec::maximum(vmax, Vec::loadu(row + c));
  if (tail) vmax = at::vec::maximum(vmax, Vec::set(lowest, Vec::loadu(row + full, tail), tail));
  const float mx = at::vec::vec_reduce_all<float>([](Vec& x, Vec& y) { return at::vec::maximum(x, y); }, vmax);
  const Vec vm(mx);
  Vec vsum(0.f);
  for (int64_t c = 0; c < full; c += W) {
    Vec e = (Vec::loadu(row + c) - vm).exp_u20();
    e.store(row + c);
    vsum = vsum + e;
  }
  if (tail) {
    Vec e = (Vec::loadu(row + full, tail) - vm).exp_u20();
    e.store(row + full, tail);
    vsum = vsum + Vec::set(Vec(0.f), e, tail);
  }
  return {mx, at::vec::vec_reduce_all<float>([](Vec& x, Vec& y) { return x + y; }, vsum)};
}

inline std::pair<double, double> exp_row(double* row, int64_t n) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t c = 0; c < n; ++c) mx = std::max(mx, row[c]);
  double sum = 0;
  for (int64_t c = 0; c < n; ++c) {
    row[c] = std::exp(row[c] - mx);
    sum += row[c];
  }
  return {mx, sum};
}

// row[0:n] <- exp(row - shift): probabilities recomputed from the saved logsumexp.
inline void exp_shifted(float* row, int64_t n, float shift) {
  using Vec = at::vec::Vectorized<float>;
  at::vec::map([shift](Vec x) { return (x - Vec(shift)).exp_u20(); }, row, row, n);
}

inline void exp_shifted(double* row, int64_t n, double shift) {
  for (int64_t c = 0; c < n; ++c) row[c] = std::exp(row[c] - shift);
}

// p[0:n] <- p * (dp - delta): the softmax backward, dS = P (dP - rowsum(dO O)).
template <typename T>
inline void softmax_grad_row(T* p, const T* dp, int64_t n, T delta) {
  using Vec = at::vec::Vectorized<T>;
  at::vec::map2([delta](Vec pv, Vec dpv) { return pv * (dpv - Vec(delta)); }, p, p, dp, n);
}

template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
  using Vec = at::vec::Vectorized<T>;
  return at::vec::map2_reduce_all<T>([](Vec x, Vec y) { return x * y; }, [](Vec x, Vec y) { return x + y; }, a, b, n);
}

// Rows of a query block at most this long share one unit; longer sequences are split so a
// unit's score buffer stays [QBLOCK, L] and a few long sequences still spread over threads.
constexpr int64_t QBLOCK = 128;
constexpr int64_t WHOLE = 256;  // sequences up to this length are one unit per head

inline int64_t block_rows(int64_t L) { return L <= WHOLE ? L : QBLOCK; }

struct Seqs {
  std::vector<int64_t> start, len;
  int64_t max_len = 0, max_rows = 0;  // longest sequence, most query rows in one unit
};

Seqs read_offsets(const at::Tensor& offsets, int64_t T) {
  TORCH_CHECK(offsets.dim() == 1 && offsets.numel() >= 1, "offsets must be 1-D [B+1]");
  auto o = offsets.to(at::kLong).contiguous();
  const int64_t* p = o.data_ptr<int64_t>();
  const int64_t B = o.numel() - 1;
  TORCH_CHECK(p[0] == 0 && p[B] == T, "offsets must run from 0 to T = ", T);
  Seqs s;
  for (int64_t i = 0; i < B; ++i) {
    const int64_t L = p[i + 1] - p[i];
    TORCH_CHECK(L >= 0, "offsets must be non-decreasing");
    if (L == 0) continue;
    s.start.push_back(p[i]);
    s.len.push_back(L);
    s.max_len = std::max(s.max_len, L);
    s.max_rows = std::max(s.max_rows, block_rows(L));
  }
  return s;
}

// Runs fn(unit) over units sorted by cost, largest first, handed out one at a time: the
// longest-processing-time-first rule keeps threads balanced when lengths differ a lot.
template <typename Unit, typename Fn>
void run_units(std::vector<Unit>& units, int64_t buffer_bytes, Fn fn) {
  std::stable_sort(units.begin(), units.end(), [](const Unit& a, const Unit& b) { return a.cost > b.cost; });
  const int64_t n = static_cast<int64_t>(units.size());
  if (n == 0) return;
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), n);
  std::atomic<int64_t> next{0};
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    std::unique_ptr<char[]> buf(new char[buffer_bytes]);  // uninitialised: every unit writes before it reads
    for (int64_t i; (i = next.fetch_add(1)) < n;) fn(units[i], buf.get());
  });
}

// Row `row`, head `head` of a [T, H, D] tensor: where a unit's rows of that head start.
template <typename T>
T* head_rows(const at::Tensor& x, int64_t row, int64_t head) {
  return x.data_ptr<T>() + row * x.stride(0) + head * x.stride(1);
}

struct FwdUnit {
  int64_t cost, seq, head, row0, rows;
};

template <typename T>
void forward_impl(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const Seqs& seqs, double scale,
                  at::Tensor& out, at::Tensor& lse) {
  const int64_t T_ = q.size(0), H = q.size(1), D = q.size(2);
  std::vector<FwdUnit> units;
  for (int64_t s = 0; s < static_cast<int64_t>(seqs.len.size()); ++s) {
    const int64_t L = seqs.len[s];
    const int64_t block = block_rows(L);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t r = 0; r < L; r += block) units.push_back({std::min(block, L - r) * L, s, h, r, std::min(block, L - r)});
  }
  const int64_t max_rows = seqs.max_rows;
  T* lp = lse.data_ptr<T>();
  run_units(units, static_cast<int64_t>(sizeof(T)) * (max_rows * seqs.max_len + max_rows), [&](const FwdUnit& u, char* raw) {
    T* S = reinterpret_cast<T*>(raw);
    T* inv = S + max_rows * seqs.max_len;
    const int64_t L = seqs.len[u.seq], t0 = seqs.start[u.seq] + u.row0, m = u.rows;
    const T* Q = head_rows<T>(q, t0, u.head);
    const T* K = head_rows<T>(k, seqs.start[u.seq], u.head);
    const T* V = head_rows<T>(v, seqs.start[u.seq], u.head);
    T* O = head_rows<T>(out, t0, u.head);
    gemm_rm<T>(false, true, m, L, D, static_cast<T>(scale), Q, q.stride(0), K, k.stride(0), T(0), S, L);
    for (int64_t j = 0; j < m; ++j) {
      auto [mx, sum] = exp_row(S + j * L, L);
      inv[j] = T(1) / sum;
      lp[u.head * T_ + t0 + j] = mx + std::log(sum);
    }
    gemm_rm<T>(false, false, m, D, L, T(1), S, L, V, v.stride(0), T(0), O, out.stride(0));
    for (int64_t j = 0; j < m; ++j) {
      T* row = O + j * out.stride(0);
      for (int64_t c = 0; c < D; ++c) row[c] *= inv[j];
    }
  });
}

struct BwdUnit {
  int64_t cost, seq, head;
};

template <typename T>
void backward_impl(const at::Tensor& dout, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                   const at::Tensor& out, const at::Tensor& lse, const Seqs& seqs, double scale, at::Tensor& dq,
                   at::Tensor& dk, at::Tensor& dv) {
  const int64_t T_ = q.size(0), H = q.size(1), D = q.size(2);
  std::vector<BwdUnit> units;
  for (int64_t s = 0; s < static_cast<int64_t>(seqs.len.size()); ++s)
    for (int64_t h = 0; h < H; ++h) units.push_back({seqs.len[s] * seqs.len[s], s, h});
  const int64_t max_rows = seqs.max_rows;
  const int64_t block_elems = max_rows * seqs.max_len;
  const T* lp = lse.data_ptr<T>();
  const T sc = static_cast<T>(scale);
  run_units(units, static_cast<int64_t>(sizeof(T)) * (2 * block_elems + max_rows), [&](const BwdUnit& u, char* raw) {
    T* P = reinterpret_cast<T*>(raw);
    T* dP = P + block_elems;
    T* delta = dP + block_elems;
    const int64_t L = seqs.len[u.seq], s0 = seqs.start[u.seq];
    const int64_t block = block_rows(L);
    const T* K = head_rows<T>(k, s0, u.head);
    const T* V = head_rows<T>(v, s0, u.head);
    T* dK = head_rows<T>(dk, s0, u.head);
    T* dV = head_rows<T>(dv, s0, u.head);
    for (int64_t r = 0; r < L; r += block) {
      const int64_t m = std::min(block, L - r), t0 = s0 + r;
      const T* Q = head_rows<T>(q, t0, u.head);
      const T* O = head_rows<T>(out, t0, u.head);
      const T* dO = head_rows<T>(dout, t0, u.head);
      T* dQ = head_rows<T>(dq, t0, u.head);
      const T beta = r == 0 ? T(0) : T(1);  // dK, dV accumulate over query blocks
      // P = exp(scale * Q K^T - lse)
      gemm_rm<T>(false, true, m, L, D, sc, Q, q.stride(0), K, k.stride(0), T(0), P, L);
      for (int64_t j = 0; j < m; ++j) {
        exp_shifted(P + j * L, L, lp[u.head * T_ + t0 + j]);
        delta[j] = dot(dO + j * dout.stride(0), O + j * out.stride(0), D);
      }
      gemm_rm<T>(true, false, L, D, m, T(1), P, L, dO, dout.stride(0), beta, dV, dv.stride(0));  // dV += P^T dO
      gemm_rm<T>(false, true, m, L, D, T(1), dO, dout.stride(0), V, v.stride(0), T(0), dP, L);  // dP = dO V^T
      for (int64_t j = 0; j < m; ++j) softmax_grad_row(P + j * L, dP + j * L, L, delta[j]);  // dS, in P
      gemm_rm<T>(false, false, m, D, L, sc, P, L, K, k.stride(0), T(0), dQ, dq.stride(0));       // dQ = scale dS K
      gemm_rm<T>(true, false, L, D, m, sc, P, L, Q, q.stride(0), beta, dK, dk.stride(0));        // dK += scale dS^T Q
    }
  });
}

void check_qkv(const at::Tensor& x, const at::Tensor& q, const char* name) {
  TORCH_CHECK(x.device().is_cpu(), name, " must be a CPU tensor");
  TORCH_CHECK(x.dim() == 3 && x.sizes() == q.sizes(), name, " must be [T, H, D] like q");
  TORCH_CHECK(x.scalar_type() == q.scalar_type(), name, " must have q's dtype");
  TORCH_CHECK(x.stride(2) == 1 || x.size(2) == 1 || x.numel() == 0, name, " needs unit stride on head_dim");
}

std::tuple<at::Tensor, at::Tensor> varlen_attention_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                        const at::Tensor& offsets, double scale) {
  for (auto [x, name] : {std::pair{&q, "q"}, {&k, "k"}, {&v, "v"}}) check_qkv(*x, q, name);
  const int64_t T_ = q.size(0), H = q.size(1), D = q.size(2);
  const Seqs seqs = read_offsets(offsets, T_);
  auto out = at::empty({T_, H, D}, q.options());
  auto lse = at::empty({H, T_}, q.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "padbench_varlen_attention_fwd",
                             [&] { forward_impl<scalar_t>(q, k, v, seqs, scale, out, lse); });
  return {out, lse};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> varlen_attention_bwd(const at::Tensor& dout, const at::Tensor& q,
                                                                    const at::Tensor& k, const at::Tensor& v,
                                                                    const at::Tensor& out, const at::Tensor& lse,
                                                                    const at::Tensor& offsets, double scale) {
  for (auto [x, name] : {std::pair{&q, "q"}, {&k, "k"}, {&v, "v"}, {&out, "out"}, {&dout, "grad_out"}})
    check_qkv(*x, q, name);
  const int64_t T_ = q.size(0), H = q.size(1), D = q.size(2);
  TORCH_CHECK(lse.is_contiguous() && lse.dim() == 2 && lse.size(0) == H && lse.size(1) == T_ &&
                  lse.scalar_type() == q.scalar_type(),
              "lse must be the forward's [H, T] logsumexp");
  const Seqs seqs = read_offsets(offsets, T_);
  auto dq = at::empty({T_, H, D}, q.options());
  auto dk = at::empty({T_, H, D}, q.options());
  auto dv = at::empty({T_, H, D}, q.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "padbench_varlen_attention_bwd",
                             [&] { backward_impl<scalar_t>(dout, q, k, v, out, lse, seqs, scale, dq, dk, dv); });
  return {dq, dk, dv};
}

}  // namespace

TORCH_LIBRARY(padbench, m) {
  m.def("varlen_attention_fwd(Tensor q, Tensor k, Tensor v, Tensor offsets, float scale) -> (Tensor, Tensor)");
  m.def(
      "varlen_attention_bwd(Tensor grad_out, Tensor q, Tensor k, Tensor v, Tensor out, Tensor lse, "
      "Tensor offsets, float scale) -> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(padbench, CPU, m) {
  m.impl("varlen_attention_fwd", varlen_attention_fwd);
  m.impl("varlen_attention_bwd", varlen_attention_bwd);
}
