// wproj — Python bindings: per-parameter optimizer states for wproj.torch (GaLore-style AdamW and
// Adafactor, Muon, APOLLO on float32 weights, updated in place). MIT licence.
#include "common.hpp"

#include <wproj/gradient/adafactor.hpp>
#include <wproj/gradient/adamw.hpp>
#include <wproj/gradient/apollo.hpp>
#include <wproj/gradient/dct_basis.hpp>
#include <wproj/gradient/gaussian_basis.hpp>
#include <wproj/gradient/muon.hpp>
#include <wproj/gradient/randomized_basis.hpp>
#include <wproj/gradient/svd_basis.hpp>

#include <memory>
#include <sstream>
#include <string>

namespace wproj_py {
namespace {

using MapW = Eigen::Map<MatR<float>>;
using MapG = Eigen::Map<const MatR<float>>;

/// The hyperparameters a step reads from the torch param group (they may change between steps).
struct Hyper {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-6, weightDecay = 0;
  bool biasCorrection = true;
  // Adafactor
  bool relativeStep = true, scaleParameter = true, warmupInit = false;
  double decayRate = -0.8, clipThreshold = 1.0, eps1 = 1e-30, eps2 = 1e-3, afBeta1 = 0;
  // Muon
  double momentum = 0.95, nsSteps = 5;
  bool nesterov = true, matchAdam = false;
  // APOLLO
  double apolloScale = 1.0;
  bool tensorScale = false, limiter = true;
};

/// The update rule of a parameter's optimizer.
enum class Rule { AdamW, Adafactor, Muon, Apollo };

/// One parameter's optimizer, type-erased over the update rule and the basis.
struct State {
  virtual ~State() = default;
  virtual void step(float* w, const float* g, Index rows, Index cols, const Hyper& h) = 0;
  virtual void save(std::ostream& os) const = 0;
  virtual void load(std::istream& is) = 0;
  virtual Index steps() const = 0;
};

template <typename Opt>
void configureAdam(Opt& o, const Hyper& h) {
  const auto& c = o.options();
  if (c.learningRate != h.lr) o.setLearningRate(h.lr);
  if (c.beta1 != h.beta1 || c.beta2 != h.beta2) o.setBetas(h.beta1, h.beta2);
  if (c.epsilon != h.eps) o.setEpsilon(h.eps);
  if (c.weightDecay != h.weightDecay) o.setWeightDecay(h.weightDecay);
  if (c.biasCorrection != h.biasCorrection) o.setBiasCorrection(h.biasCorrection);
}

template <typename Opt>
void configureAdafactor(Opt& o, const Hyper& h) {
  wproj::AdafactorOptions a;
  a.relativeStep = h.relativeStep;
  a.learningRate = h.relativeStep ? 0.0 : h.lr;
  a.scaleParameter = h.scaleParameter;
  a.warmupInit = h.warmupInit;
  a.beta1 = h.afBeta1;
  a.decayRate = h.decayRate;
  a.clipThreshold = h.clipThreshold;
  a.epsilon1 = h.eps1;
  a.epsilon2 = h.eps2;
  a.weightDecay = h.weightDecay;
  const auto& c = o.options();
  if (c.relativeStep != a.relativeStep || c.learningRate != a.learningRate || c.scaleParameter != a.scaleParameter ||
      c.warmupInit != a.warmupInit || c.beta1 != a.beta1 || c.decayRate != a.decayRate ||
      c.clipThreshold != a.clipThreshold || c.epsilon1 != a.epsilon1 || c.epsilon2 != a.epsilon2 ||
      c.weightDecay != a.weightDecay)
    o.setOptions(a);
}

// Muon and APOLLO take the group's hyperparameters whole at every step (validation is a few
// comparisons next to a step).
template <typename Opt>
void configureMuon(Opt& o, const Hyper& h) {
  wproj::MuonOptions m = o.options();
  m.learningRate = h.lr;
  m.momentum = h.momentum;
  m.nesterov = h.nesterov;
  m.nsSteps = int(h.nsSteps);
  m.weightDecay = h.weightDecay;
  m.scaling = h.matchAdam ? wproj::MuonScaling::MatchAdam : wproj::MuonScaling::Shape;
  o.setOptions(m);
}

template <typename Opt>
void configureApollo(Opt& o, const Hyper& h) {
  wproj::ApolloOptions a = o.options();
  a.learningRate = h.lr;
  a.beta1 = h.beta1;
  a.beta2 = h.beta2;
  a.epsilon = h.eps;
  a.weightDecay = h.weightDecay;
  a.biasCorrection = h.biasCorrection;
  a.scale = h.apolloScale;
  a.scaling = h.tensorScale ? wproj::ApolloScaling::Tensor : wproj::ApolloScaling::Channel;
  a.normGrowthLimiter = h.limiter;
  o.setOptions(a);
}

template <typename Opt, Rule R>
struct Holder : State {
  Opt opt;
  void step(float* w, const float* g, Index rows, Index cols, const Hyper& h) override {
    if constexpr (R == Rule::AdamW) configureAdam(opt, h);
    else if constexpr (R == Rule::Adafactor) configureAdafactor(opt, h);
    else if constexpr (R == Rule::Muon) configureMuon(opt, h);
    else configureApollo(opt, h);
    MapW W(w, rows, cols);
    MapG G(g, rows, cols);
    opt.step(W, G);
  }
  void save(std::ostream& os) const override { opt.save(os); }
  void load(std::istream& is) override { opt.load(is); }
  Index steps() const override { return Index(opt.stepCount()); }
};

wproj::ProjectionType projectionType(const std::string& t) {
  if (t == "std") return wproj::ProjectionType::Std;
  if (t == "reverse_std") return wproj::ProjectionType::ReverseStd;
  if (t == "left") return wproj::ProjectionType::Left;
  if (t == "right") return wproj::ProjectionType::Right;
  if (t == "full") return wproj::ProjectionType::Full;
  throw py::value_error("argument 'proj_type' = '" + t + "'; expected one of std, reverse_std, left, right, full");
}

template <template <typename> class Opt, typename Basis, Rule R>
std::unique_ptr<State> projected(Index rank, Index gap, double scale, const std::string& type, std::uint64_t seed) {
  auto h = std::make_unique<Holder<Opt<Basis>, R>>();
  auto& p = h->opt.projector();
  p.setRank(rank).setUpdateGap(gap).setScale(float(scale)).setProjectionType(projectionType(type));
  if constexpr (std::is_same<Basis, wproj::RandomizedBasis<float>>::value ||
                std::is_same<Basis, wproj::GaussianBasis<float>>::value)
    p.basis().setSeed(seed);
  return h;
}

/// APOLLO with a one-sided projector over `Basis` (refreshed every `gap` steps).
template <typename Basis>
std::unique_ptr<State> apollo(Index rank, Index gap, const std::string& type, std::uint64_t seed) {
  auto h = std::make_unique<Holder<wproj::Apollo<Basis>, Rule::Apollo>>();
  auto& p = h->opt.projector();
  p.setRank(rank).setUpdateGap(gap).setProjectionType(projectionType(type));
  if constexpr (std::is_same<Basis, wproj::GaussianBasis<float>>::value) p.basis().setSeed(seed);
  return h;
}

/// A parameter's optimizer: AdamW, Adafactor or APOLLO (rank 0: the plain AdamW or Adafactor on
/// the full gradient), or Muon.
class ParamState {
 public:
  ParamState(const std::string& rule, Index rank, const std::string& basis, const std::string& projType, Index gap,
             double scale, std::uint64_t seed) {
    const bool adam = rule == "adamw", muon = rule == "muon", apolloRule = rule == "apollo";
    if (!adam && !muon && !apolloRule && rule != "adafactor")
      throw py::value_error("argument 'rule' = '" + rule + "'; expected 'adamw', 'adafactor', 'muon' or 'apollo'");
    if (rank < 0) throw py::value_error("argument 'rank' = " + std::to_string(rank) + "; expected >= 1 (or 0: no projection)");
    if (rank > 0 && gap < 1)
      throw py::value_error("argument 'update_proj_gap' = " + std::to_string(gap) + "; expected >= 1");
    if (muon) {
      if (rank != 0) throw py::value_error("argument 'rank' = " + std::to_string(rank) + "; Muon does not project (expected 0)");
      m_s = std::make_unique<Holder<wproj::Muon<float>, Rule::Muon>>();
      m_muon = true;
      return;
    }
    if (rank == 0) {
      if (adam || apolloRule) m_s = std::make_unique<Holder<wproj::AdamW<float>, Rule::AdamW>>();
      else m_s = std::make_unique<Holder<wproj::Adafactor<float>, Rule::Adafactor>>();
      return;
    }
    m_projected = true;
    if (apolloRule) {
      if (projType == "full")
        throw py::value_error("argument 'proj_type' = 'full'; APOLLO projects one side (std, reverse_std, left or right)");
      if (basis == "random" || basis == "gaussian") m_s = apollo<wproj::GaussianBasis<float>>(rank, gap, projType, seed);
      else if (basis == "svd") m_s = apollo<wproj::SVDBasis<float>>(rank, gap, projType, seed);
      else throw py::value_error("argument 'proj' = '" + basis + "'; expected 'random' or 'svd' for APOLLO");
    } else if (adam) {
      if (basis == "svd") m_s = projected<wproj::ProjectedAdamW, wproj::SVDBasis<float>, Rule::AdamW>(rank, gap, scale, projType, seed);
      else if (basis == "randomized") m_s = projected<wproj::ProjectedAdamW, wproj::RandomizedBasis<float>, Rule::AdamW>(rank, gap, scale, projType, seed);
      else if (basis == "dct") m_s = projected<wproj::ProjectedAdamW, wproj::DCTBasis<float>, Rule::AdamW>(rank, gap, scale, projType, seed);
      else if (basis == "gaussian") m_s = projected<wproj::ProjectedAdamW, wproj::GaussianBasis<float>, Rule::AdamW>(rank, gap, scale, projType, seed);
      else throw py::value_error("argument 'basis' = '" + basis + "'; expected one of svd, randomized, dct, gaussian");
    } else {
      if (basis == "svd") m_s = projected<wproj::ProjectedAdafactor, wproj::SVDBasis<float>, Rule::Adafactor>(rank, gap, scale, projType, seed);
      else if (basis == "randomized") m_s = projected<wproj::ProjectedAdafactor, wproj::RandomizedBasis<float>, Rule::Adafactor>(rank, gap, scale, projType, seed);
      else throw py::value_error("argument 'basis' = '" + basis + "'; expected 'svd' or 'randomized' for Adafactor");
    }
  }

  /// One step on the float32 C-contiguous weight `w`, in place, with gradient `g` (same shape).
  void step(py::array w, py::array g, const py::dict& hp) {
    check(w, "weight");
    check(g, "grad");
    if (w.ndim() != g.ndim()) throw py::value_error("argument 'grad' has another shape than the weight");
    for (py::ssize_t i = 0; i < w.ndim(); ++i)
      if (w.shape(i) != g.shape(i)) throw py::value_error("argument 'grad' has another shape than the weight");
    if (!w.writeable()) throw py::value_error("argument 'weight' is read-only");
    Index rows = 1, cols = 1;
    if (w.ndim() == 2) {
      rows = w.shape(0);
      cols = w.shape(1);
    } else if (m_muon) {
      if (w.ndim() < 2)
        throw py::value_error("Muon orthogonalises matrices; this parameter has " + std::to_string(w.ndim()) +
                              " dimension(s) (train biases, gains and embeddings with AdamW)");
      rows = w.shape(0);  // a convolution filter as (out, in·kh·kw), as the reference
      cols = w.size() / std::max<py::ssize_t>(rows, 1);
    } else if (m_projected) {
      throw py::value_error("a parameter with 'rank' must be 2-D (a Linear weight); this one has " +
                            std::to_string(w.ndim()) + " dimension(s)");
    } else if (w.ndim() > 2) {
      cols = w.shape(w.ndim() - 1);
      rows = w.size() / std::max<py::ssize_t>(cols, 1);
    } else {
      rows = w.size();
    }
    Hyper h;
    auto get = [&](const char* k, double& v) {
      if (hp.contains(k)) v = hp[k].cast<double>();
    };
    auto getb = [&](const char* k, bool& v) {
      if (hp.contains(k)) v = hp[k].cast<bool>();
    };
    get("lr", h.lr), get("beta1", h.beta1), get("beta2", h.beta2), get("eps", h.eps), get("weight_decay", h.weightDecay);
    getb("correct_bias", h.biasCorrection), getb("relative_step", h.relativeStep), getb("scale_parameter", h.scaleParameter);
    getb("warmup_init", h.warmupInit), get("decay_rate", h.decayRate), get("clip_threshold", h.clipThreshold);
    get("eps1", h.eps1), get("eps2", h.eps2), get("adafactor_beta1", h.afBeta1);
    get("momentum", h.momentum), get("ns_steps", h.nsSteps), getb("nesterov", h.nesterov), getb("match_adam", h.matchAdam);
    get("apollo_scale", h.apolloScale), getb("tensor_scale", h.tensorScale), getb("norm_growth_limiter", h.limiter);
    float* pw = static_cast<float*>(w.mutable_data());
    const float* pg = static_cast<const float*>(g.data());
    py::gil_scoped_release release;
    m_s->step(pw, pg, rows, cols, h);
  }

  py::bytes save() const {
    std::ostringstream os(std::ios::binary);
    m_s->save(os);
    return py::bytes(os.str());
  }
  void load(const py::bytes& b) {
    std::istringstream is(std::string(b), std::ios::binary);
    m_s->load(is);
  }
  Index steps() const { return m_s->steps(); }

 private:
  static void check(const py::array& a, const char* name) {
    if (!(a.dtype().kind() == 'f' && a.dtype().itemsize() == 4))
      throw py::value_error(std::string("argument '") + name + "' has dtype " + py::str(a.dtype()).cast<std::string>() +
                            "; expected float32 (wproj.torch updates float32 CPU tensors in place)");
    if (!(a.flags() & py::array::c_style))
      throw py::value_error(std::string("argument '") + name + "' is not C-contiguous; expected a contiguous tensor");
  }
  std::unique_ptr<State> m_s;
  bool m_projected = false, m_muon = false;
};

}  // namespace

void initOptimizers(py::module_& m) {
  py::class_<ParamState>(m, "ParamState", "One parameter's optimizer state (AdamW, Adafactor or APOLLO, projected or not; Muon).")
      .def(py::init<const std::string&, Index, const std::string&, const std::string&, Index, double, std::uint64_t>(),
           py::arg("rule"), py::arg("rank"), py::arg("basis"), py::arg("proj_type"), py::arg("update_proj_gap"),
           py::arg("scale"), py::arg("seed"))
      .def("step", &ParamState::step)
      .def("save", &ParamState::save)
      .def("load", &ParamState::load)
      .def_property_readonly("steps", &ParamState::steps);
}

}  // namespace wproj_py
