// Tour chapter: weight editing — erase a protected attribute from representations and from a layer.
#include "tour.hpp"

#include <wproj/editing.hpp>

#include <Eigen/Dense>

#include <cmath>
#include <iomanip>
#include <string>

namespace chapter40 {  // a named namespace per chapter: the chapters compile as one unit

using Mat = Eigen::MatrixXd;
using Vec = Eigen::VectorXd;
using wproj::Index;
using wproj::Labels;

struct Data {
  Mat x, flipped;  // embeddings and their counterfactuals (attribute flipped)
  Labels z, y;     // protected attribute, main task (agrees with z 70% of the time)
};

Data make(Index n, const Mat& mixing, const Vec& attr, const Vec& task, const Vec& common, std::uint64_t seed) {
  const Index d = mixing.cols();
  Data s;
  wproj::CounterRng rng(seed, 1);
  s.x = wproj::gaussianMatrix<Mat>(n, mixing.rows(), seed, 2) * mixing + wproj::gaussianMatrix<Mat>(n, d, seed, 3, 0.5);
  s.x.rowwise() += 8.0 * common.transpose();  // a large mean direction shared by every embedding
  s.flipped = s.x + wproj::gaussianMatrix<Mat>(n, d, seed, 4, 0.2);  // counterfactuals differ a little
  s.z.resize(n);
  s.y.resize(n);
  for (Index i = 0; i < n; ++i) {
    s.z(i) = int(rng.nextBelow(2));
    s.y(i) = rng.nextUniform() < 0.7 ? s.z(i) : 1 - s.z(i);
    const double a = s.z(i) ? 1.2 : -1.2, t = s.y(i) ? 1.5 : -1.5;
    s.x.row(i) += a * attr.transpose() + t * task.transpose();
    s.flipped.row(i) += -a * attr.transpose() + t * task.transpose();
  }
  return s;
}

double probe(const Mat& tr, const Labels& ltr, const Mat& te, const Labels& lte) {
  wproj::LogisticRegression<double> lr;
  return lr.fit(tr, ltr).score(te, lte);
}

void run(std::ostream& os, const tour::Options& opt) {
  const Index d = opt.quick ? 24 : 64, n = opt.quick ? 800 : 4000;
  const Mat mixing = wproj::gaussianMatrix<Mat>(d / 2, d, 7, 0, 1.0 / std::sqrt(double(d / 2)));
  Mat dirs = wproj::gaussianMatrix<Mat>(d, 3, 8);
  wproj::orthonormalizeInPlace(dirs);
  const Data train = make(n, mixing, dirs.col(0), dirs.col(1), dirs.col(2), 100),
             test = make(n / 2, mixing, dirs.col(0), dirs.col(1), dirs.col(2), 200);
  const double majority = wproj::LabelEncoding(test.z).majorityRate();
  const Data dev = make(n / 4, mixing, dirs.col(0), dirs.col(1), dirs.col(2), 300);

  os << "Embeddings carry a protected attribute z and a main-task label y. Each estimator turns data\n"
        "into what to remove; a logistic probe retrained afterwards shows what is left (test accuracy;\n"
        "chance for z = " << std::fixed << std::setprecision(3) << majority << "):\n\n";
  os << "  " << std::left << std::setw(24) << "representation" << std::right << std::setw(11) << "attribute"
     << std::setw(11) << "main task" << "\n";
  auto line = [&](const std::string& name, const Mat& tr, const Mat& te) {
    os << "  " << std::left << std::setw(24) << name << std::right << std::setw(11) << probe(tr, train.z, te, test.z)
       << std::setw(11) << probe(tr, train.y, te, test.y) << "\n";
  };
  line("original", train.x, test.x);

  wproj::InlpEstimator<double> inlp;
  inlp.setIterations(10).setMinAccuracy(wproj::LabelEncoding(dev.z).majorityRate() + 0.02).fit(train.x, train.z, dev.x, dev.z);
  line("INLP (" + std::to_string(inlp.classifiersKept()) + " SVMs)", inlp.project(train.x), inlp.project(test.x));

  wproj::LeaceFitter<double> fitter(d, 2);
  fitter.update(train.x, train.z);
  const auto eraser = fitter.eraser();
  line("LEACE", eraser.erase(train.x), eraser.erase(test.x));

  Mat good(n, d), bad(n, d);
  for (Index i = 0; i < n; ++i) {
    good.row(i) = train.z(i) ? train.flipped.row(i) : train.x.row(i);
    bad.row(i) = train.z(i) ? train.x.row(i) : train.flipped.row(i);
  }
  wproj::DetoxEstimator<double> detox;
  detox.setRank(2).fit(good, bad);
  line("DeTox-style (k=2)", detox.subspace().projectOut(train.x, wproj::Side::Right),
       detox.subspace().projectOut(test.x, wproj::Side::Right));

  // A layer y = Wx whose weight writes the attribute along an unwanted output direction v;
  // the direction is estimated from its outputs on counterfactual pairs.
  const Index out = 12;
  const Vec v = wproj::gaussianMatrix<Mat>(out, 1, 9).col(0).normalized(), u = dirs.col(0);
  Mat w = wproj::gaussianMatrix<Mat>(out, d, 10, 0, 1.0 / std::sqrt(double(d)));
  w = w - (w * u) * u.transpose() + 1.5 * v * u.transpose();
  wproj::MeanDifferenceEstimator<double> md;
  md.fit(Mat(bad * w.transpose()), Mat(good * w.transpose()));
  wproj::WeightEditor<double> editor;  // output side, α = 1
  const auto edited = editor.apply(w, md.subspace());
  const Mat yNew = test.x * edited.weight.transpose(), yOld = test.x * w.transpose();
  const double other = md.subspace().projectOut(Mat(yNew - yOld), wproj::Side::Right).norm() / yOld.norm();
  os << "\nEditing a layer: the mean-difference direction of its outputs (|cos| with the planted one = "
     << std::setprecision(3) << std::abs(md.direction().dot(v)) << ")\nis projected out of W (output side):\n"
     << "  ‖vᵀW‖ " << edited.report.normBefore(0) << " -> " << std::scientific << std::setprecision(1)
     << edited.report.normAfter(0) << std::fixed << std::setprecision(3) << ", ‖ΔW‖/‖W‖ = "
     << edited.report.deltaNorm / edited.report.weightNorm << ", outputs orthogonal to v change by " << std::scientific
     << std::setprecision(1) << other << "\n"
     << std::defaultfloat;
}

tour::Register chapter{40, "Weight editing: concept erasure", &run};

}  // namespace chapter40
