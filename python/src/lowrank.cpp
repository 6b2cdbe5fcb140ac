// wproj — Python bindings: LoRA factors from weights (lowrank/lora.hpp). MIT licence.
#include "common.hpp"

#include <wproj/lowrank/lora.hpp>

#include <vector>

namespace wproj_py {
namespace {

wproj::LoraSplit parseSplit(const std::string& s) {
  if (s == "balanced") return wproj::LoraSplit::Balanced;
  if (s == "b") return wproj::LoraSplit::IntoB;
  if (s == "a") return wproj::LoraSplit::IntoA;
  throw py::value_error("argument 'split' = '" + s + "'; expected 'balanced', 'b' or 'a'");
}

wproj::LoraSolver parseSolver(const std::string& s) {
  if (s == "auto") return wproj::LoraSolver::Auto;
  if (s == "exact") return wproj::LoraSolver::Exact;
  if (s == "randomized") return wproj::LoraSolver::Randomized;
  throw py::value_error("argument 'solver' = '" + s + "'; expected 'auto', 'exact' or 'randomized'");
}

/// The rank rule from the keyword arguments: exactly one of rank / energy / rel_error / sv_epsilon.
wproj::RankRule parseRule(py::object rank, py::object energy, py::object relError, py::object svEpsilon,
                          py::object maxRank) {
  int given = int(!rank.is_none()) + int(!energy.is_none()) + int(!relError.is_none()) + int(!svEpsilon.is_none());
  if (given > 1)
    throw py::value_error("give at most one of 'rank', 'energy', 'rel_error', 'sv_epsilon' (got " +
                          std::to_string(given) + ")");
  wproj::RankRule rule = wproj::RankRule::fixed(16);
  if (!rank.is_none()) rule = wproj::RankRule::fixed(rank.cast<Index>());
  if (!energy.is_none()) rule = wproj::RankRule::energy(energy.cast<double>());
  if (!relError.is_none()) {
    const double e = relError.cast<double>();
    if (!(e > 0.0 && e < 1.0)) throw py::value_error("argument 'rel_error' = " + std::to_string(e) + "; expected a value in (0, 1)");
    rule = wproj::RankRule::energy(1.0 - e * e);
  }
  if (!svEpsilon.is_none()) rule = wproj::RankRule::absoluteTolerance(svEpsilon.cast<double>());
  if (!maxRank.is_none()) rule = rule.withMaxRank(maxRank.cast<Index>());
  return rule;
}

/// The result object: factors in NumPy arrays plus what the extraction achieved.
struct PyLoraFactors {
  py::array B, A, sigma;
  double scale = 1.0, normSq = 0.0, errorSq = 0.0;
  bool randomized = false;
  Index rank = 0;
};

template <typename S>
PyLoraFactors extractT(const py::array& tau, const py::array* base, const wproj::LoraOptions& opt) {
  wproj::LoraFactors<S> f;
  {
    py::gil_scoped_release release;
    if (base) {
      if (base->shape(0) != tau.shape(0) || base->shape(1) != tau.shape(1))
        throw wproj::InvalidArgument("extract_lora: argument 'base' has shape " +
                                     wproj::detail::shapeString(base->shape(0), base->shape(1)) +
                                     "; expected the shape of fine_tuned, " +
                                     wproj::detail::shapeString(tau.shape(0), tau.shape(1)));
      const Mat<S> t = withView<S>(tau, [&](const auto& ft) {
        return withView<S>(*base, [&](const auto& b) { return Mat<S>(ft - b); });
      });
      f = wproj::extractLora(t, opt);
    } else {
      f = withView<S>(tau, [&](const auto& v) { return wproj::extractLora(v, opt); });
    }
  }
  PyLoraFactors r;
  r.rank = f.rank();
  r.scale = f.scale;
  r.normSq = f.normSq;
  r.errorSq = f.errorSq;
  r.randomized = f.randomized;
  r.B = toNumpy<S>(std::move(f.B));
  r.A = toNumpy<S>(std::move(f.A));
  r.sigma = toNumpy<S>(std::move(f.sigma));
  return r;
}

template <typename S>
py::array applyT(const py::array& w, const py::array& b, const py::array& a, double scale, double sign, bool transposed) {
  Mat<S> out = withView<S>(w, [](const auto& v) { return Mat<S>(v); });
  {
    py::gil_scoped_release release;
    withView<S>(b, [&](const auto& bv) {
      withView<S>(a, [&](const auto& av) { wproj::applyLora(out, bv, av, scale, sign, transposed); });
    });
  }
  return toNumpy<S>(std::move(out));
}

}  // namespace

void initLowrank(py::module_& m) {
  py::class_<PyLoraFactors>(m, "LoraFactors",
                            "LoRA factors of one matrix: scale·B·A ≈ τ, with what the extraction achieved.")
      .def_readonly("B", &PyLoraFactors::B, "(out, r) factor, PEFT's lora_B.weight")
      .def_readonly("A", &PyLoraFactors::A, "(r, in) factor, PEFT's lora_A.weight")
      .def_readonly("sigma", &PyLoraFactors::sigma, "the r kept singular values of τ, descending")
      .def_readonly("scale", &PyLoraFactors::scale, "PEFT's scaling lora_alpha / r: ΔW = scale·B·A")
      .def_readonly("rank", &PyLoraFactors::rank, "r")
      .def_readonly("norm_sq", &PyLoraFactors::normSq, "‖τ‖²_F")
      .def_readonly("error_sq", &PyLoraFactors::errorSq, "‖τ − scale·B·A‖²_F, measured")
      .def_readonly("randomized", &PyLoraFactors::randomized, "whether the randomized solver produced them")
      .def_property_readonly(
          "relative_error",
          [](const PyLoraFactors& f) { return f.normSq > 0 ? std::sqrt(f.errorSq / f.normSq) : 0.0; },
          "‖τ − scale·B·A‖_F / ‖τ‖_F")
      .def("__repr__", [](const PyLoraFactors& f) {
        return "LoraFactors(rank=" + std::to_string(f.rank) + ", relative_error=" +
               std::to_string(f.normSq > 0 ? std::sqrt(f.errorSq / f.normSq) : 0.0) + ")";
      });

  m.def(
      "lora_extract",
      [](py::handle fineTuned, py::object base, py::object rank, py::object energy, py::object relError,
         py::object svEpsilon, py::object maxRank, double scale, const std::string& split, const std::string& solver,
         std::uint64_t seed, Index oversampling, Index powerIterations) {
        wproj::LoraOptions opt;
        opt.rule = parseRule(rank, energy, relError, svEpsilon, maxRank);
        opt.scale = scale;
        opt.split = parseSplit(split);
        opt.solver = parseSolver(solver);
        opt.seed = seed;
        opt.oversampling = oversampling;
        opt.powerIterations = powerIterations;
        py::array t = asMatrixArray(fineTuned, "fine_tuned");
        if (base.is_none()) return kindOf(t) == Kind::F32 ? extractT<float>(t, nullptr, opt) : extractT<double>(t, nullptr, opt);
        py::array b = asMatrixArray(base, "base");
        const Kind k = commonKind({&t, &b});
        t = castTo(t, k);
        b = castTo(b, k);
        return k == Kind::F32 ? extractT<float>(t, &b, opt) : extractT<double>(t, &b, opt);
      },
      py::arg("fine_tuned"), py::arg("base") = py::none(), py::kw_only(), py::arg("rank") = py::none(),
      py::arg("energy") = py::none(), py::arg("rel_error") = py::none(), py::arg("sv_epsilon") = py::none(),
      py::arg("max_rank") = py::none(), py::arg("scale") = 1.0, py::arg("split") = "balanced",
      py::arg("solver") = "auto", py::arg("seed") = 0, py::arg("oversampling") = 10, py::arg("power_iterations") = -1);

  m.def(
      "lora_apply",
      [](py::handle w, py::handle b, py::handle a, double scale, bool subtract, bool transposed) {
        py::array W = asMatrixArray(w, "W"), B = asMatrixArray(b, "B"), A = asMatrixArray(a, "A");
        const Kind k = commonKind({&W, &B, &A});
        W = castTo(W, k);
        B = castTo(B, k);
        A = castTo(A, k);
        const double sign = subtract ? -1.0 : 1.0;
        return k == Kind::F32 ? applyT<float>(W, B, A, scale, sign, transposed)
                              : applyT<double>(W, B, A, scale, sign, transposed);
      },
      py::arg("W"), py::arg("B"), py::arg("A"), py::arg("scale") = 1.0, py::kw_only(), py::arg("subtract") = false,
      py::arg("transposed") = false);

  m.def(
      "lora_spectrum",
      [](py::handle tau, Index cap, std::uint64_t seed) {
        py::array t = asMatrixArray(tau, "tau");
        wproj::LoraOptions opt;
        opt.seed = seed;
        wproj::LoraSpectrum s;
        {
          py::gil_scoped_release release;
          if (kindOf(t) == Kind::F32)
            s = withView<float>(t, [&](const auto& v) { return wproj::loraSpectrum(v, cap, opt); });
          else
            s = withView<double>(t, [&](const auto& v) { return wproj::loraSpectrum(v, cap, opt); });
        }
        return py::make_tuple(toNumpy<double>(Vec<double>(s.sigma)), s.normSq);
      },
      py::arg("tau"), py::arg("cap"), py::kw_only(), py::arg("seed") = 0);

  m.def(
      "lora_allocate_budget",
      [](const std::vector<std::pair<py::array_t<double, py::array::c_style | py::array::forcecast>, double>>& spectra,
         const std::vector<std::uint64_t>& bytesPerRank, std::uint64_t budget, Index minRank, bool forceGreedy) {
        if (spectra.size() != bytesPerRank.size())
          throw py::value_error("argument 'bytes_per_rank' has " + std::to_string(bytesPerRank.size()) +
                                " entries; expected one per spectrum (" + std::to_string(spectra.size()) + ")");
        std::vector<wproj::LoraBudgetItem> items(spectra.size());
        for (std::size_t i = 0; i < spectra.size(); ++i) {
          const auto& sg = spectra[i].first;
          if (sg.ndim() != 1) throw py::value_error("spectra[" + std::to_string(i) + "]: sigma must be 1-D");
          items[i].spectrum.sigma = Eigen::Map<const Eigen::VectorXd>(sg.data(), Index(sg.shape(0)));
          items[i].spectrum.normSq = spectra[i].second;
          items[i].bytesPerRank = bytesPerRank[i];
          items[i].minRank = minRank;
        }
        wproj::LoraAllocation a;
        {
          py::gil_scoped_release release;
          a = wproj::allocateLoraBudget(items, budget, forceGreedy);
        }
        py::dict d;
        d["ranks"] = a.ranks;
        d["bytes"] = a.bytes;
        d["error_sq"] = a.errorSq;
        d["gap_bound"] = a.gapBound;
        d["exact"] = a.exact;
        return d;
      },
      py::arg("spectra"), py::arg("bytes_per_rank"), py::arg("budget"), py::kw_only(), py::arg("min_rank") = 1,
      py::arg("force_greedy") = false);
}

}  // namespace wproj_py
