// wproj — Python bindings: DAMA, INLP, ThinkEdit's mean difference and the WeightEditor. MIT licence.
// Inputs are copied once into column-major matrices (small: activations of a few thousand samples).
#include "common.hpp"

#include <wproj/editing/dama.hpp>
#include <wproj/editing/inlp.hpp>
#include <wproj/editing/linear_classifier.hpp>
#include <wproj/editing/mean_difference.hpp>
#include <wproj/editing/weight_editor.hpp>

namespace wproj_py {
namespace {

template <typename S>
Mat<S> matOf(py::handle obj, const char* name) {
  py::array a = castTo(asMatrixArray(obj, name), sizeof(S) == 4 ? Kind::F32 : Kind::F64);
  return withView<S>(a, [](const auto& v) { return Mat<S>(v); });
}

template <typename S>
py::tuple damaT(py::handle X, py::handle Y, Index rank, py::object C, double lambda, Index maxIter, double tol) {
  Mat<S> x = matOf<S>(X, "X"), y = matOf<S>(Y, "Y"), c;
  if (!C.is_none()) c = matOf<S>(C, "C");
  wproj::DamaEstimator<S> est;
  est.setRank(rank).setPlsIterations(maxIter, tol);
  if (!C.is_none()) est.setWhitening(c, lambda);
  {
    py::gil_scoped_release release;
    est.fit(x, y);
  }
  return py::make_tuple(py::cast(est.subspace()), toNumpy<S>(Mat<S>(est.xWeights())));
}

template <typename S, typename Classifier>
py::dict inlpRun(const Classifier& proto, const Mat<S>& x, const wproj::Labels& labels, Index iterations, double minAcc) {
  wproj::InlpEstimator<S, Classifier> est(proto);
  est.setIterations(iterations).setMinAccuracy(minAcc);
  {
    py::gil_scoped_release release;
    est.fit(x, labels);
  }
  py::list weights;
  for (const auto& w : est.classifierWeights()) weights.append(toNumpy<S>(Mat<S>(w)));
  py::dict d;
  d["subspace"] = py::cast(est.subspace());
  d["null_space"] = py::cast(est.nullSpace());
  d["accuracies"] = est.accuracies();
  d["majority"] = est.majorityAccuracy();
  d["weights"] = weights;
  return d;
}

template <typename S>
py::dict inlpT(py::handle X, py::handle y, const std::string& classifier, Index iterations, double minAcc, double c,
               bool fitIntercept, bool balanced) {
  Mat<S> x = matOf<S>(X, "X");
  py::array_t<int, py::array::forcecast | py::array::c_style> lab = py::array_t<int, py::array::forcecast | py::array::c_style>::ensure(y);
  if (!lab || lab.ndim() != 1) throw py::value_error("argument 'y' must be a 1-D array of integer class labels");
  wproj::Labels labels = Eigen::Map<const wproj::Labels>(lab.data(), lab.shape(0));
  if (classifier == "svm") {
    wproj::LinearSVM<S> p;
    p.setC(c).setFitIntercept(fitIntercept).setBalanced(balanced);
    return inlpRun<S>(p, x, labels, iterations, minAcc);
  }
  if (classifier == "logistic") {
    wproj::LogisticRegression<S> p;
    p.setC(c).setFitIntercept(fitIntercept).setBalanced(balanced);
    return inlpRun<S>(p, x, labels, iterations, minAcc);
  }
  throw py::value_error("argument 'classifier' = '" + classifier + "'; expected 'svm' or 'logistic'");
}

template <typename S>
py::tuple meanDiffT(py::handle A, py::handle B) {
  Mat<S> a = matOf<S>(A, "A"), b = matOf<S>(B, "B");
  wproj::MeanDifferenceEstimator<S> est;
  {
    py::gil_scoped_release release;
    est.fit(a, b);
  }
  return py::make_tuple(toNumpy<S>(Vec<S>(est.direction())), double(est.gap()));
}

template <typename S>
py::tuple editT(py::handle W, const wproj::Subspace<S>& q, const std::string& side, bool transposed, double strength,
                Index outStart, Index outCount, Index inStart, Index inCount, bool accumulateDouble) {
  Mat<S> w = matOf<S>(W, "W");
  if (side != "output" && side != "input")
    throw py::value_error("argument 'side' = '" + side + "'; expected 'output' or 'input'");
  wproj::WeightEditor<S> ed(side == "output" ? wproj::WeightSide::Output : wproj::WeightSide::Input);
  ed.setTransposed(transposed).setStrength(strength).setAccumulateInDouble(accumulateDouble);
  if (outStart >= 0) ed.setOutputRange(outStart, outCount);
  if (inStart >= 0) ed.setInputRange(inStart, inCount);
  wproj::EditReport rep;
  {
    py::gil_scoped_release release;
    rep = ed.applyInPlace(w, q);
  }
  py::dict r;
  r["delta_norm"] = rep.deltaNorm;
  r["weight_norm"] = rep.weightNorm;
  r["norm_before"] = toNumpy<double>(Vec<double>(rep.normBefore));
  r["norm_after"] = toNumpy<double>(Vec<double>(rep.normAfter));
  r["storage_side"] = std::string(rep.storageSide == wproj::Side::Left ? "left" : "right");
  return py::make_tuple(toNumpy<S>(std::move(w)), r);
}

template <typename S>
void bindTyped(py::module_& m, const char* suffix) {
  const std::string s(suffix);
  m.def(("dama_fit" + s).c_str(), &damaT<S>);
  m.def(("inlp_fit" + s).c_str(), &inlpT<S>);
  m.def(("mean_difference_fit" + s).c_str(), &meanDiffT<S>);
  m.def(("weight_edit" + s).c_str(), &editT<S>);
}

}  // namespace

void initEditingMore(py::module_& m) {
  bindTyped<float>(m, "32");
  bindTyped<double>(m, "64");
}

}  // namespace wproj_py
