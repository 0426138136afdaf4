// Fused FastGRNN recurrence for RNNPool (CPU, float32/float64).
//
// Runs many independent sequences of equal length T that are read in place from a source
// tensor, and the exact backward pass. Sequence b at step t is the H values at
//
//     src[offsets[b] + t * steps[b] + 0 .. H)
//
// so RNN1 reads rows and columns of every patch straight out of the projected, channels-last
// activation map (steps of one pixel or one image row), and RNN2 reads its forward and backward
// sweeps out of the summaries (positive and negative steps) with no gather copies. Math:
//
//   pre_t = x_t + U h_{t-1}                        x_t: the input projection W x_t, U: [H, H]
//   z_t   = gate(pre_t + bias_gate)
//   c_t   = update(pre_t + bias_update)
//   h_t   = (sz * (1 - z_t) + sn) * c_t + z_t * h_{t-1},    h_0 = 0
//
// sz = sigmoid(zeta) and sn = sigmoid(nu) arrive already squashed (autograd outside handles the
// sigmoid). Nonlinearity codes, gate and update alike: 0 sigmoid, 1 tanh, 2 quantSigmoid
// clip((x+1)/2, 0, 1), 3 quantTanh clip(x, -1, 1); derivatives are taken from the outputs, and
// the clipped ones from their inputs, passing the gradient on the closed interval [-1, 1].
//
// Why it is fast:
// - Sequences are processed in blocks of NB that stay in cache for all T steps, stored
//   feature-major ([H][NB]) so every inner loop runs over the batch: the U h products have
//   independent lanes and the elementwise gate math is one vectorised pass per step.
// - Each nonlinearity pair is its own template instance (branch-free loops), and -ffast-math
//   lets gcc call glibc's vector exp/tanh.
// - The forward pass keeps nothing but h_T. The backward pass recomputes a block's forward in
//   cache, runs back-propagation through time on it and scatter-adds the input gradient into a
//   per-thread copy of d src (patches overlap), summed at the end.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

constexpr int64_t NB = 64;  // sequences per block

enum Act { kSigmoid = 0, kTanh = 1, kQuantSigmoid = 2, kQuantTanh = 3 };

template <typename T, int A>
inline T act(T x) {
  if (A == kSigmoid) return T(1) / (T(1) + std::exp(-x));
  if (A == kTanh) return std::tanh(x);
  if (A == kQuantSigmoid) return std::min(std::max((x + T(1)) * T(0.5), T(0)), T(1));
  return std::min(std::max(x, T(-1)), T(1));
}

// Derivative from the output y (smooth ones) or the input x (clipped ones; the gradient passes
// on the closed interval, as torch.clamp's does, so the eager path agrees at the kinks).
template <typename T, int A>
inline T act_grad(T x, T y) {
  if (A == kSigmoid) return y * (T(1) - y);
  if (A == kTanh) return T(1) - y * y;
  const T inside = (x >= T(-1) && x <= T(1)) ? T(1) : T(0);
  return A == kQuantSigmoid ? T(0.5) * inside : inside;
}

template <typename T>
struct Problem {
  int64_t T_, B, H;
  const T* src;
  const int64_t* offsets;
  const int64_t* steps;
  const T* U;  // [H, H] row-major
  const T* bg;
  const T* bh;
  T sz, sn;
};

// A block's working set, feature-major: value (t, i, b) at [(t * H + i) * NB + b].
template <typename T>
struct Block {
  std::vector<T> pre, hs, zs, cs;  // pre-activations (before biases), z, c: T steps; hs: T + 1
  explicit Block(int64_t T_, int64_t H)
      : pre(T_ * H * NB), hs((T_ + 1) * H * NB), zs(T_ * H * NB), cs(T_ * H * NB) {}
};

// pre[i][b] = x[i][b] + sum_j U[i][j] h[j][b] for the nb live lanes.
template <typename T>
inline void add_Uh(const Problem<T>& p, const T* __restrict h, T* __restrict pre) {
  for (int64_t i = 0; i < p.H; ++i) {
    T* __restrict out = pre + i * NB;
    const T* u = p.U + i * p.H;
    for (int64_t j = 0; j < p.H; ++j) {
      const T uij = u[j];
      const T* __restrict hj = h + j * NB;
#pragma omp simd
      for (int64_t b = 0; b < NB; ++b) out[b] += uij * hj[b];
    }
  }
}

template <typename T, int G, int C>
void block_forward(const Problem<T>& p, int64_t b0, int64_t nb, Block<T>& w) {
  const int64_t H = p.H, S = H * NB;
  std::fill(w.pre.begin(), w.pre.end(), T(0));
  for (int64_t b = 0; b < nb; ++b) {  // gather W x, transposing to feature-major
    const T* s = p.src + p.offsets[b0 + b];
    const int64_t step = p.steps[b0 + b];
    for (int64_t t = 0; t < p.T_; ++t, s += step) {
      T* dst = w.pre.data() + t * S + b;
      for (int64_t i = 0; i < H; ++i) dst[i * NB] = s[i];
    }
  }
  std::fill(w.hs.begin(), w.hs.begin() + S, T(0));
  for (int64_t t = 0; t < p.T_; ++t) {
    const T* __restrict hp = w.hs.data() + t * S;
    T* __restrict hn = w.hs.data() + (t + 1) * S;
    T* __restrict z = w.zs.data() + t * S;
    T* __restrict c = w.cs.data() + t * S;
    T* __restrict pre = w.pre.data() + t * S;
    if (t > 0) add_Uh(p, hp, pre);
    for (int64_t i = 0; i < H; ++i) {
      const T bg = p.bg[i], bh = p.bh[i], sz = p.sz, sn = p.sn;
      const T* __restrict ai = pre + i * NB;
      T* __restrict hni = hn + i * NB;
      const T* __restrict hpi = hp + i * NB;
      T* __restrict zi = z + i * NB;
      T* __restrict ci = c + i * NB;
#pragma omp simd
      for (int64_t b = 0; b < NB; ++b) {
        const T zz = act<T, G>(ai[b] + bg);
        const T cc = act<T, C>(ai[b] + bh);
        zi[b] = zz;
        ci[b] = cc;
        hni[b] = (sz * (T(1) - zz) + sn) * cc + zz * hpi[b];
      }
    }
  }
}

// Calls fn(first_block, last_block, chunk) for at most `chunks` contiguous ranges of blocks.
template <typename F>
void for_chunks(int64_t blocks, int64_t chunks, const F& fn) {
  const int64_t per = (blocks + chunks - 1) / chunks;
  at::parallel_for(0, chunks, 1, [&](int64_t cb, int64_t ce) {
    for (int64_t c = cb; c < ce; ++c) {
      const int64_t k0 = c * per, k1 = std::min(blocks, k0 + per);
      if (k0 < k1) fn(k0, k1, c);
    }
  });
}

inline int64_t num_chunks(int64_t blocks) { return std::max<int64_t>(1, std::min<int64_t>(blocks, at::get_num_threads())); }

template <typename T, int G, int C>
void forward_impl(const Problem<T>& p, T* h_out) {
  const int64_t blocks = (p.B + NB - 1) / NB, H = p.H;
  for_chunks(blocks, num_chunks(blocks), [&](int64_t k0, int64_t k1, int64_t) {
    Block<T> w(p.T_, H);
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t b0 = k * NB, nb = std::min(NB, p.B - b0);
      block_forward<T, G, C>(p, b0, nb, w);
      const T* h = w.hs.data() + p.T_ * H * NB;
      for (int64_t b = 0; b < nb; ++b)
        for (int64_t i = 0; i < H; ++i) h_out[(b0 + b) * H + i] = h[i * NB + b];
    }
  });
}

template <typename T>
struct Grads {
  std::vector<T> dU, dbg, dbh, dsrc;  // dsrc: this thread's scatter target (chunk 0 uses the output)
  T dsz = 0, dsn = 0;
};

template <typename T, int G, int C>
void backward_impl(const Problem<T>& p, const T* grad_h, T* dsrc, int64_t src_numel, T* dU, T* dbg, T* dbh,
                   double* dsz, double* dsn) {
  const int64_t H = p.H, S = H * NB, T_ = p.T_;
  const int64_t blocks = (p.B + NB - 1) / NB, chunks = num_chunks(blocks);
  std::vector<Grads<T>> partial(chunks);
  for_chunks(blocks, chunks, [&](int64_t k0, int64_t k1, int64_t chunk) {
    Grads<T>& g = partial[chunk];
    g.dU.assign(H * H, T(0));
    g.dbg.assign(H, T(0));
    g.dbh.assign(H, T(0));
    if (chunk > 0) g.dsrc.assign(src_numel, T(0));
    T* out = chunk > 0 ? g.dsrc.data() : dsrc;
    Block<T> w(T_, H);
    std::vector<T> dh(S), dn(S), dpre(S);
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t b0 = k * NB, nb = std::min(NB, p.B - b0);
      block_forward<T, G, C>(p, b0, nb, w);
      std::fill(dh.begin(), dh.end(), T(0));
      for (int64_t b = 0; b < nb; ++b)
        for (int64_t i = 0; i < H; ++i) dh[i * NB + b] = grad_h[(b0 + b) * H + i];
      for (int64_t t = T_ - 1; t >= 0; --t) {
        const T* z = w.zs.data() + t * S;
        const T* c = w.cs.data() + t * S;
        const T* hp = w.hs.data() + t * S;
        const T* a = w.pre.data() + t * S;
        for (int64_t i = 0; i < H; ++i) {
          const T sz = p.sz, sn = p.sn, bg = p.bg[i], bh = p.bh[i];
          const T* __restrict ai = a + i * NB;
          const T* __restrict zi = z + i * NB;
          const T* __restrict ci = c + i * NB;
          const T* __restrict hpi = hp + i * NB;
          const T* __restrict gi = dh.data() + i * NB;
          T* __restrict dpi = dpre.data() + i * NB;
          T* __restrict dni = dn.data() + i * NB;
          T s_pz = 0, s_pc = 0, s_sz = 0, s_sn = 0;
#pragma omp simd reduction(+ : s_pz, s_pc, s_sz, s_sn)
          for (int64_t b = 0; b < NB; ++b) {
            const T zz = zi[b], cc = ci[b], gh = gi[b];
            const T pz = gh * (hpi[b] - sz * cc) * act_grad<T, G>(ai[b] + bg, zz);
            const T pc = gh * (sz * (T(1) - zz) + sn) * act_grad<T, C>(ai[b] + bh, cc);
            dpi[b] = pz + pc;
            dni[b] = gh * zz;
            s_pz += pz;
            s_pc += pc;
            s_sz += gh * (T(1) - zz) * cc;
            s_sn += gh * cc;
          }
          g.dbg[i] += s_pz;
          g.dbh[i] += s_pc;
          g.dsz += s_sz;
          g.dsn += s_sn;
        }
        for (int64_t b = 0; b < nb; ++b) {  // scatter-add d x_t (patches overlap)
          T* d = out + p.offsets[b0 + b] + t * p.steps[b0 + b];
          for (int64_t i = 0; i < H; ++i) d[i] += dpre[i * NB + b];
        }
        if (t == 0) break;  // h_0 = 0: nothing reaches U or an earlier state from step 0
        for (int64_t i = 0; i < H; ++i) {
          const T* __restrict dpi = dpre.data() + i * NB;
          const T* u = p.U + i * H;
          T* du = g.dU.data() + i * H;
          for (int64_t j = 0; j < H; ++j) {
            const T* __restrict hj = hp + j * NB;
            T* __restrict dnj = dn.data() + j * NB;
            const T uij = u[j];
            T s = 0;
#pragma omp simd reduction(+ : s)
            for (int64_t b = 0; b < NB; ++b) {
              s += dpi[b] * hj[b];
              dnj[b] += uij * dpi[b];
            }
            du[j] += s;
          }
        }
        std::swap(dh, dn);
      }
    }
  });
  std::fill(dU, dU + H * H, T(0));
  std::fill(dbg, dbg + H, T(0));
  std::fill(dbh, dbh + H, T(0));
  *dsz = *dsn = 0.0;
  for (const auto& g : partial) {
    if (g.dU.empty()) continue;
    for (int64_t q = 0; q < H * H; ++q) dU[q] += g.dU[q];
    for (int64_t q = 0; q < H; ++q) {
      dbg[q] += g.dbg[q];
      dbh[q] += g.dbh[q];
    }
    *dsz += g.dsz;
    *dsn += g.dsn;
  }
  at::parallel_for(0, src_numel, 1 << 16, [&](int64_t q0, int64_t q1) {
    for (int64_t c = 1; c < chunks; ++c) {
      const T* s = partial[c].dsrc.data();
      if (partial[c].dsrc.empty()) continue;
#pragma omp simd
      for (int64_t q = q0; q < q1; ++q) dsrc[q] += s[q];
    }
  });
}

// Function tables indexed [gate][update]: one branch-free instance per nonlinearity pair.
template <typename T>
using ForwardFn = void (*)(const Problem<T>&, T*);
template <typename T>
using BackwardFn = void (*)(const Problem<T>&, const T*, T*, int64_t, T*, T*, T*, double*, double*);

#define RNNPOOL_ROW(F, G) {&F<T, G, 0>, &F<T, G, 1>, &F<T, G, 2>, &F<T, G, 3>}
#define RNNPOOL_TABLE(F) {RNNPOOL_ROW(F, 0), RNNPOOL_ROW(F, 1), RNNPOOL_ROW(F, 2), RNNPOOL_ROW(F, 3)}

template <typename T>
ForwardFn<T> forward_fn(int64_t gate, int64_t update) {
  static const ForwardFn<T> table[4][4] = RNNPOOL_TABLE(forward_impl);
  return table[gate][update];
}

template <typename T>
BackwardFn<T> backward_fn(int64_t gate, int64_t update) {
  static const BackwardFn<T> table[4][4] = RNNPOOL_TABLE(backward_impl);
  return table[gate][update];
}

#undef RNNPOOL_TABLE
#undef RNNPOOL_ROW

// Validates the arguments and returns the problem description (tensors must outlive it).
template <typename T>
Problem<T> make_problem(const torch::Tensor& src, const torch::Tensor& offsets, const torch::Tensor& steps,
                        int64_t length, const torch::Tensor& U, const torch::Tensor& bg, const torch::Tensor& bh,
                        double sz, double sn) {
  const int64_t H = U.size(0), B = offsets.numel();
  const int64_t* off = offsets.data_ptr<int64_t>();
  const int64_t* st = steps.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b) {  // every read stays inside src
    const int64_t first = off[b], last = off[b] + (length - 1) * st[b];
    TORCH_CHECK(std::min(first, last) >= 0 && std::max(first, last) + H <= src.numel(),
                "sequence ", b, " reads outside src");
  }
  return Problem<T>{length, B, H, src.data_ptr<T>(), off, st, U.data_ptr<T>(),
                    bg.data_ptr<T>(), bh.data_ptr<T>(), static_cast<T>(sz), static_cast<T>(sn)};
}

void check_inputs(const torch::Tensor& src, const torch::Tensor& offsets, const torch::Tensor& steps,
                  int64_t length, const torch::Tensor& U, const torch::Tensor& bg, const torch::Tensor& bh,
                  int64_t gate, int64_t update) {
  TORCH_CHECK(gate >= 0 && gate <= 3 && update >= 0 && update <= 3, "nonlinearity codes must be 0..3");
  TORCH_CHECK(src.is_contiguous() && U.is_contiguous() && bg.is_contiguous() && bh.is_contiguous(),
              "src, U and the biases must be contiguous");
  TORCH_CHECK(offsets.scalar_type() == torch::kLong && steps.scalar_type() == torch::kLong &&
                  offsets.is_contiguous() && steps.is_contiguous() && offsets.numel() == steps.numel(),
              "offsets and steps must be contiguous int64 tensors of one length");
  TORCH_CHECK(length >= 1, "length must be positive");
  TORCH_CHECK(U.dim() == 2 && U.size(0) == U.size(1), "U must be square");
  TORCH_CHECK(bg.numel() == U.size(0) && bh.numel() == U.size(0), "biases must have H elements");
  TORCH_CHECK(U.scalar_type() == src.scalar_type() && bg.scalar_type() == src.scalar_type() &&
                  bh.scalar_type() == src.scalar_type(),
              "src, U and the biases must share one dtype");
}

}  // namespace

// Final hidden states [B, H] of the recurrence over the sequences (offsets, steps, length) of src.
torch::Tensor fastgrnn_forward(torch::Tensor src, torch::Tensor offsets, torch::Tensor steps, int64_t length,
                               torch::Tensor U, torch::Tensor bias_gate, torch::Tensor bias_update, double sz,
                               double sn, int64_t gate, int64_t update) {
  check_inputs(src, offsets, steps, length, U, bias_gate, bias_update, gate, update);
  auto h_out = torch::empty({offsets.numel(), U.size(0)}, src.options());
  if (offsets.numel() == 0) return h_out;
  AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "fastgrnn_forward", [&] {
    auto p = make_problem<scalar_t>(src, offsets, steps, length, U, bias_gate, bias_update, sz, sn);
    forward_fn<scalar_t>(gate, update)(p, h_out.data_ptr<scalar_t>());
  });
  return h_out;
}

// Given d loss / d h_T [B, H]: {d src (src's shape), d U, d bias_gate, d bias_update, d sz, d sn}.
std::vector<torch::Tensor> fastgrnn_backward(torch::Tensor grad_h, torch::Tensor src, torch::Tensor offsets,
                                             torch::Tensor steps, int64_t length, torch::Tensor U,
                                             torch::Tensor bias_gate, torch::Tensor bias_update, double sz,
                                             double sn, int64_t gate, int64_t update) {
  check_inputs(src, offsets, steps, length, U, bias_gate, bias_update, gate, update);
  grad_h = grad_h.contiguous();
  const int64_t H = U.size(0);
  auto opts = src.options();
  auto dsrc = torch::zeros_like(src);
  auto dU = torch::zeros({H, H}, opts);
  auto dbg = torch::zeros({H}, opts);
  auto dbh = torch::zeros({H}, opts);
  double dsz = 0.0, dsn = 0.0;
  if (offsets.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES(src.scalar_type(), "fastgrnn_backward", [&] {
      auto p = make_problem<scalar_t>(src, offsets, steps, length, U, bias_gate, bias_update, sz, sn);
      backward_fn<scalar_t>(gate, update)(p, grad_h.data_ptr<scalar_t>(), dsrc.data_ptr<scalar_t>(), src.numel(),
                                          dU.data_ptr<scalar_t>(), dbg.data_ptr<scalar_t>(),
                                          dbh.data_ptr<scalar_t>(), &dsz, &dsn);
    });
  }
  return {dsrc, dU, dbg, dbh, torch::full({}, dsz, opts), torch::full({}, dsn, opts)};
}

#ifndef RNNPOOL_BUILD_KEY
#define RNNPOOL_BUILD_KEY unknown
#endif
#define RNNPOOL_STR2(x) #x
#define RNNPOOL_STR(x) RNNPOOL_STR2(x)

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  // The digest of this file and its build flags (rnnpool_nas/ops/_kernel.py: build_key): a build
  // made at install time is used only while the source it came from is unchanged.
  m.attr("build_key") = RNNPOOL_STR(RNNPOOL_BUILD_KEY);
  m.def("forward", &fastgrnn_forward, "Final states of FastGRNN over sequences read in place from src");
  m.def("backward", &fastgrnn_backward, "Backward of fastgrnn_forward (recomputes the forward in cache)");
}
