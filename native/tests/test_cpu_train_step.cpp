// CPU tests of the training step's device-side scalars: ath_cpu_adamw's grad_scale_ptr path against
// its grad_scale path (bit-identical at awkward sizes, nothing touched for a non-finite factor) and
// ath_cpu_train_scalars (LOSS_MEAN and CLIP_SCALE against the host loops they replace).
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "testing.h"

namespace {

using namespace ath::testing;

struct AdamState {
  std::vector<float> p, g, m, v;
  HostBuf low;
  AdamState(int64_t n, int lowp, uint64_t seed) : p(n), g(n), m(n), v(n), low(lowp ? lowp : ATH_BF16, n) {
    Rng rng(seed);
    for (int64_t i = 0; i < n; ++i) {
      const size_t k = static_cast<size_t>(i);
      p[k] = static_cast<float>(rng.uniform(-1, 1));
      g[k] = static_cast<float>(rng.uniform(-3, 3));
      m[k] = static_cast<float>(rng.uniform(-0.1, 0.1));
      v[k] = static_cast<float>(rng.uniform(0, 0.01));
    }
  }
  ath_adamw_args args(int lowp, int64_t step) {
    ath_adamw_args a{};
    a.n = static_cast<int64_t>(p.size()); a.params = p.data(); a.grads = g.data(); a.m = m.data(); a.v = v.data();
    a.params_lowp = lowp ? low.data() : nullptr; a.dtype_lowp = lowp ? lowp : ATH_BF16;
    a.lr = 3e-3f; a.beta1 = 0.9f; a.beta2 = 0.95f; a.eps = 1e-8f; a.weight_decay = 0.1f; a.step = step;
    return a;
  }
  bool same(const AdamState& o) const {
    auto eq = [](const std::vector<float>& x, const std::vector<float>& y) {
      return std::memcmp(x.data(), y.data(), x.size() * sizeof(float)) == 0;
    };
    return eq(p, o.p) && eq(m, o.m) && eq(v, o.v) && low.same_bits(o.low);
  }
};

ATH_TEST(cpu_adamw_scale_pointer_matches_scalar) {
  for (int64_t n : {int64_t{1}, int64_t{7}, int64_t{1023}, int64_t{1025}, int64_t{4099}, int64_t{100003}})
    for (int lowp : {0, (int)ATH_BF16, (int)ATH_F16})
      for (float scale : {0.3712f, 1.0f, 1e-3f}) {
        AdamState byValue(n, lowp, 17 + n), byPointer(n, lowp, 17 + n);
        for (int64_t step = 1; step <= 3; ++step) {
          ath_adamw_args a = byValue.args(lowp, step);
          a.grad_scale = scale;
          ATH_EXPECT_OK(ath_cpu_adamw(&a));
          ath_adamw_args b = byPointer.args(lowp, step);
          b.grad_scale = 123.0f;  // ignored: the pointed-to factor is read in its place
          b.grad_scale_ptr = &scale;
          ATH_EXPECT_OK(ath_cpu_adamw(&b));
        }
        ATH_EXPECT(byValue.same(byPointer), "n=%lld lowp=%d scale=%g: the pointer path's bits differ", (long long)n,
                   lowp, (double)scale);
      }
}

ATH_TEST(cpu_adamw_non_finite_scale_pointer_updates_nothing) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()})
    for (int lowp : {0, (int)ATH_BF16}) {
      AdamState s(1025, lowp, 5), before(1025, lowp, 5);
      ath_adamw_args a = s.args(lowp, 2);
      a.grad_scale = 1.0f;
      a.grad_scale_ptr = &bad;
      ATH_EXPECT_OK(ath_cpu_adamw(&a));
      ATH_EXPECT(s.same(before), "factor %g lowp=%d: the update changed something", (double)bad, lowp);
    }
}

ATH_TEST(cpu_train_scalars_loss_mean_matches_host_loop) {
  Rng rng(3);
  for (int64_t n : {int64_t{1}, int64_t{5}, int64_t{1000}, int64_t{16385}}) {
    std::vector<float> x(n);
    std::vector<int32_t> t(n);
    for (int64_t i = 0; i < n; ++i) {
      x[static_cast<size_t>(i)] = static_cast<float>(rng.uniform(0, 12));
      t[static_cast<size_t>(i)] = rng.below(5) == 0 ? -1 : static_cast<int32_t>(rng.below(50));
    }
    double sum = 0;
    int64_t kept = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (t[static_cast<size_t>(i)] >= 0) { sum += x[static_cast<size_t>(i)]; ++kept; }
    }
    const float want = kept == 0 ? 0.0f : static_cast<float>(sum / kept);
    float out = -1;
    ath_train_scalars_args a{};
    a.op = ATH_TS_LOSS_MEAN; a.n = n; a.x = x.data(); a.targets = t.data(); a.out = &out;
    ATH_EXPECT_OK(ath_cpu_train_scalars(&a));
    ATH_EXPECT(std::memcmp(&out, &want, 4) == 0, "n=%lld: mean %.9g, want %.9g", (long long)n, (double)out, (double)want);
    std::vector<int32_t> none(n, -1);
    a.targets = none.data();
    ATH_EXPECT_OK(ath_cpu_train_scalars(&a));
    ATH_EXPECT(out == 0.0f, "n=%lld every target ignored: %g, want 0", (long long)n, (double)out);
  }
}

ATH_TEST(cpu_train_scalars_clip_scale) {
  std::vector<float> parts = {3.5f, 0.25f, 1e-3f, 12.0f};
  double total = 0;
  for (float p : parts) total += p;
  const float norm = static_cast<float>(std::sqrt(total));
  std::vector<float> losses = {2.5f, 3.25f};
  float out[2] = {-1, -1};
  ath_train_scalars_args a{};
  a.op = ATH_TS_CLIP_SCALE; a.n = 4; a.x = parts.data(); a.n_losses = 2; a.losses = losses.data(); a.out = out;
  for (float max_norm : {0.0f, 0.5f, 100.0f}) {
    a.max_norm = max_norm;
    ATH_EXPECT_OK(ath_cpu_train_scalars(&a));
    const float want = max_norm > 0 ? static_cast<float>(std::fmin(1.0, max_norm / (norm + 1e-6))) : 1.0f;
    ATH_EXPECT(out[0] == norm && out[1] == want, "max_norm %g: (%g, %g), want (%g, %g)", (double)max_norm,
               (double)out[0], (double)out[1], (double)norm, (double)want);
  }
  losses[1] = std::numeric_limits<float>::infinity();
  ATH_EXPECT_OK(ath_cpu_train_scalars(&a));
  ATH_EXPECT(std::isnan(out[1]), "an infinite loss gave factor %g, want NaN", (double)out[1]);
  losses[1] = 1.0f;
  parts[2] = std::numeric_limits<float>::quiet_NaN();
  ATH_EXPECT_OK(ath_cpu_train_scalars(&a));
  ATH_EXPECT(std::isnan(out[0]) && std::isnan(out[1]), "a NaN partial gave (%g, %g)", (double)out[0], (double)out[1]);
  a.op = 7;
  ATH_EXPECT_INVALID(ath_cpu_train_scalars(&a), "op 7");
  a.op = ATH_TS_CLIP_SCALE; a.out = nullptr;
  ATH_EXPECT_INVALID(ath_cpu_train_scalars(&a), "null out");
}

}  // namespace
