// concept_erasure — remove a protected attribute from representations, then from a layer.
//
// Part 1: synthetic sentence embeddings carry a protected attribute z (think: gender) and a main
// task label y (think: profession), correlated as in real data. Linear probes read both. INLP,
// LEACE and a DeTox-style projection each erase z; a probe retrained afterwards shows what is
// left of z (chance = majority rate) and of the main task.
//
// Part 2: a small linear layer trained on such inputs writes the attribute into its outputs
// along an unwanted direction. A mean-difference estimate of that direction is projected out of
// the layer's weight (output side), and the affine LEACE eraser is folded into weight and bias.
//
//   concept_erasure           full size
//   concept_erasure --quick   small sizes (what the test suite runs)

#include <wproj/editing.hpp>

#include <Eigen/Dense>

#include <cstring>
#include <iomanip>
#include <iostream>
#include <string>

namespace {

using Mat = Eigen::MatrixXd;
using Vec = Eigen::VectorXd;
using wproj::Index;
using wproj::Labels;

/// Embeddings x = 8m + content·A + s·(±u) + t·(±w) + noise (m: a shared mean direction), with z = attribute, y = main task (P(y = z) = 0.7).
/// `flipped` holds the counterfactual embeddings (same content and noise, attribute flipped).
struct Corpus {
  Mat x, flipped;
  Labels z, y;
};

Corpus makeCorpus(Index n, Index d, std::uint64_t seed, const Mat& mixing, const Vec& attrDir, const Vec& taskDir,
                  const Vec& commonDir) {
  Corpus c;
  wproj::CounterRng rng(seed, 1);
  const Mat content = wproj::gaussianMatrix<Mat>(n, mixing.rows(), seed, 2);
  const Mat noise = wproj::gaussianMatrix<Mat>(n, d, seed, 3, 0.5);
  c.x = content * mixing + noise;
  c.x.rowwise() += 8.0 * commonDir.transpose();  // every embedding shares a large mean direction
  c.flipped = c.x + wproj::gaussianMatrix<Mat>(n, d, seed, 4, 0.2);  // counterfactuals differ a little
  c.z.resize(n);
  c.y.resize(n);
  for (Index i = 0; i < n; ++i) {
    c.z(i) = int(rng.nextBelow(2));
    c.y(i) = rng.nextUniform() < 0.7 ? c.z(i) : 1 - c.z(i);
    const double sz = c.z(i) ? 1.0 : -1.0, sy = c.y(i) ? 1.0 : -1.0;
    c.x.row(i) += 1.2 * sz * attrDir.transpose() + 1.5 * sy * taskDir.transpose();
    c.flipped.row(i) += -1.2 * sz * attrDir.transpose() + 1.5 * sy * taskDir.transpose();
  }
  return c;
}

/// Test accuracy of a logistic-regression probe trained on (train, labels).
double probe(const Mat& train, const Labels& trainLabels, const Mat& test, const Labels& testLabels) {
  wproj::LogisticRegression<double> lr;
  lr.fit(train, trainLabels);
  return lr.score(test, testLabels);
}

void row(const std::string& name, double attr, double task, double moved, Index removed) {
  std::cout << "  " << std::left << std::setw(30) << name << std::right << std::fixed << std::setprecision(3)
            << std::setw(10) << attr << std::setw(10) << task << std::setw(12) << moved << std::setw(9) << removed << "\n";
}

/// RMS distance each sample moved.
double moved(const Mat& a, const Mat& b) { return (a - b).norm() / std::sqrt(double(a.rows())); }

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) quick = true;
    else {
      std::cerr << "concept_erasure: unknown argument '" << argv[i] << "' (use --quick)\n";
      return 2;
    }
  }
  try {
    const Index d = quick ? 32 : 96, n = quick ? 1200 : 6000, latent = d / 2;
    // shared structure: a mixing matrix for the content and two planted directions
    const Mat mixing = wproj::gaussianMatrix<Mat>(latent, d, 7, 0, 1.0 / std::sqrt(double(latent)));
    Mat dirs = wproj::gaussianMatrix<Mat>(d, 3, 8);
    wproj::orthonormalizeInPlace(dirs);
    const Vec attrDir = dirs.col(0), taskDir = dirs.col(1), commonDir = dirs.col(2);
    const Corpus train = makeCorpus(n, d, 100, mixing, attrDir, taskDir, commonDir);
    const Corpus test = makeCorpus(n / 2, d, 200, mixing, attrDir, taskDir, commonDir);
    const Corpus dev = makeCorpus(n / 4, d, 300, mixing, attrDir, taskDir, commonDir);  // INLP's stopping rule
    const double majority = wproj::LabelEncoding(test.z).majorityRate();

    std::cout << "Part 1 — erasing a protected attribute from " << d << "-dim embeddings (" << n
              << " train / " << n / 2 << " test)\n\n";
    std::cout << "  probe accuracy on the test set (logistic regression retrained after each erasure);\n"
              << "  attribute chance level (majority) = " << std::fixed << std::setprecision(3) << majority << "\n\n";
    std::cout << "  " << std::left << std::setw(30) << "representation" << std::right << std::setw(10) << "attribute"
              << std::setw(10) << "main task" << std::setw(12) << "RMS moved" << std::setw(9) << "rank" << "\n";

    row("original", probe(train.x, train.z, test.x, test.z), probe(train.x, train.y, test.x, test.y), 0.0, 0);

    // INLP: iterative linear SVMs until the attribute is no longer decodable on held-out data
    wproj::InlpEstimator<double> inlp;
    inlp.setIterations(quick ? 10 : 20).setMinAccuracy(wproj::LabelEncoding(dev.z).majorityRate() + 0.01);
    inlp.fit(train.x, train.z, dev.x, dev.z);
    const Mat inlpTrain = inlp.project(train.x), inlpTest = inlp.project(test.x);
    row("INLP (" + std::to_string(inlp.classifiersKept()) + " classifiers)", probe(inlpTrain, train.z, inlpTest, test.z),
        probe(inlpTrain, train.y, inlpTest, test.y), moved(test.x, inlpTest), inlp.subspace().dim());

    // LEACE: streaming fit in batches, one oblique affine eraser
    wproj::LeaceFitter<double> fitter(d, 2);
    for (Index s = 0; s < n; s += 256) {
      const Index m = std::min<Index>(256, n - s);
      fitter.update(train.x.middleRows(s, m), train.z.segment(s, m));
    }
    const wproj::LeaceEraser<double> eraser = fitter.eraser();
    const Mat leaceTrain = eraser.erase(train.x), leaceTest = eraser.erase(test.x);
    row("LEACE", probe(leaceTrain, train.z, leaceTest, test.z), probe(leaceTrain, train.y, leaceTest, test.y),
        moved(test.x, leaceTest), eraser.rank());

    // DeTox-style: counterfactual pairs (attribute = 0 "preferred", attribute = 1 "unwanted")
    Mat preferred(n, d), unwanted(n, d);
    for (Index i = 0; i < n; ++i) {
      preferred.row(i) = train.z(i) == 0 ? train.x.row(i) : train.flipped.row(i);
      unwanted.row(i) = train.z(i) == 1 ? train.x.row(i) : train.flipped.row(i);
    }
    wproj::DetoxEstimator<double> detox;
    detox.setRank(2).fit(preferred, unwanted);
    const Mat detoxTrain = detox.subspace().projectOut(train.x, wproj::Side::Right);
    const Mat detoxTest = detox.subspace().projectOut(test.x, wproj::Side::Right);
    row("DeTox-style projection (k=2)", probe(detoxTrain, train.z, detoxTest, test.z),
        probe(detoxTrain, train.y, detoxTest, test.y), moved(test.x, detoxTest), detox.subspace().dim());
    std::cout << "\n  (the main task stays above chance but loses what it shared with the attribute:\n"
                 "   y agrees with z on 70% of the samples, so part of its signal is the attribute itself)\n";

    // ---------------------------------------------------------------------------------------------
    std::cout << "\nPart 2 — editing a trained layer so that an unwanted output direction disappears\n\n";
    const Index out = 16;
    // the "teacher" the layer learns writes the attribute into its outputs along vBad
    Mat teacher = wproj::gaussianMatrix<Mat>(out, d, 9, 0, 1.0 / std::sqrt(double(d)));
    teacher -= (teacher * attrDir) * attrDir.transpose();  // the attribute reaches the outputs only along vBad
    const Vec vBad = wproj::gaussianMatrix<Mat>(out, 1, 10).col(0).normalized();
    teacher += 1.5 * vBad * attrDir.transpose();
    Mat targets = train.x * teacher.transpose();
    targets.rowwise() += Vec::LinSpaced(out, -1, 1).transpose();
    targets += wproj::gaussianMatrix<Mat>(n, out, 11, 0, 0.1);
    // train y = Wx + b by ridge least squares
    Mat xa(n, d + 1);
    xa << train.x, Mat::Ones(n, 1);
    Mat gram = xa.transpose() * xa;
    gram.diagonal().array() += 1e-3;
    const Mat coef = gram.ldlt().solve(xa.transpose() * targets);
    const Mat w = coef.topRows(d).transpose();
    const Vec b = coef.row(d).transpose();

    auto outputs = [&](const Mat& wm, const Vec& bv) -> Mat { return (test.x * wm.transpose()).rowwise() + bv.transpose(); };
    auto split = [&](const Mat& y, int cls) {
      Mat sel(0, y.cols());
      for (Index i = 0; i < y.rows(); ++i)
        if (test.z(i) == cls) {
          sel.conservativeResize(sel.rows() + 1, Eigen::NoChange);
          sel.row(sel.rows() - 1) = y.row(i);
        }
      return sel;
    };
    const Mat y0 = outputs(w, b);
    // the direction: mean difference of the layer's outputs on counterfactual pairs (the same
    // inputs with the attribute set to 1 and to 0), as one finds a direction from he/she prompts
    const Mat yTrain = (train.x * w.transpose()).rowwise() + b.transpose();
    const Mat yUnwanted = (unwanted * w.transpose()).rowwise() + b.transpose();
    const Mat yPreferred = (preferred * w.transpose()).rowwise() + b.transpose();
    wproj::MeanDifferenceEstimator<double> md;
    md.fit(yUnwanted, yPreferred);
    std::cout << "  estimated direction vs planted: |cos| = " << std::setprecision(3)
              << std::abs(md.direction().dot(vBad)) << "\n\n";

    wproj::WeightEditor<double> editor;
    editor.setSide(wproj::WeightSide::Output);
    const auto proj = editor.apply(w, md.subspace());
    wproj::LeaceFitter<double> outFit(out, 2);
    outFit.update(yTrain, train.z);
    const auto folded = editor.apply(w, b, outFit.eraser());

    auto gapAlong = [&](const Mat& y) {
      return std::abs((split(y, 1).colwise().mean() - split(y, 0).colwise().mean()).dot(md.direction()));
    };
    auto gapAll = [&](const Mat& y) { return (split(y, 1).colwise().mean() - split(y, 0).colwise().mean()).norm(); };
    auto changeOff = [&](const Mat& y) {  // change of the outputs outside the removed direction
      const Mat dy = md.subspace().projectOut(Mat(y - y0), wproj::Side::Right);
      return dy.norm() / y0.norm();
    };
    std::cout << "  " << std::left << std::setw(30) << "layer" << std::right << std::setw(12) << "gap along v" << std::setw(12)
              << "group gap" << std::setw(14) << "other change" << std::setw(12) << "|dW|/|W|" << "\n";
    auto line = [&](const std::string& name, const Mat& y, double dw) {
      std::cout << "  " << std::left << std::setw(30) << name << std::right << std::setprecision(4) << std::setw(12)
                << gapAlong(y) << std::setw(12) << gapAll(y) << std::setw(14) << changeOff(y) << std::setw(12) << dw << "\n";
    };
    line("trained", y0, 0.0);
    line("W <- (I - vv^T) W", outputs(proj.weight, b), proj.report.deltaNorm / proj.report.weightNorm);
    line("LEACE folded (W' = PW, b')", outputs(folded.weight, folded.bias), folded.report.deltaNorm / folded.report.weightNorm);
    std::cout << "\n  ‖vᵀW‖ before/after the projection: " << proj.report.normBefore(0) << " -> " << proj.report.normAfter(0)
              << "\n  (group gap = distance between the mean outputs of the two attribute groups on test data;\n"
                 "   other change = relative change of the outputs orthogonal to v. The projection removes the\n"
                 "   attribute's own path through the layer; the group gap left is carried by the main task,\n"
                 "   which agrees with the attribute 70% of the time. LEACE equalises the group means on the\n"
                 "   training data, so it removes that too, at the price of changing other outputs.)\n";
  } catch (const std::exception& e) {
    std::cerr << "concept_erasure: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
