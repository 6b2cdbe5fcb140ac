// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// What a merge did, tensor by tensor: per-name rules (which tensors get the method's matrix
/// treatment, which are averaged, which are skipped) and the report every merger fills in.
/// Nothing is dropped silently: every tensor a driver visits appears in the report together
/// with the rule that decided its treatment and any warning raised while merging it.

#include "../core/config.hpp"

#include <cstddef>
#include <functional>
#include <iomanip>
#include <ostream>
#include <regex>
#include <string>
#include <utility>
#include <vector>

namespace wproj {

/// How a merger treats one tensor.
enum class TensorAction {
  Project,  ///< the method's own treatment (projection, trimming, spectral merge, …)
  Average,  ///< no matrix treatment: batch mergers take the mean of the task vectors; OPCM adds τ unprojected
  Skip      ///< the tensor is left at its base value (θ = θ₀)
};

/// Name of an action ("project", "average", "skip").
inline const char* toString(TensorAction a) {
  switch (a) {
    case TensorAction::Project: return "project";
    case TensorAction::Average: return "average";
    case TensorAction::Skip: return "skip";
  }
  return "?";
}

/// The outcome of the rules for one tensor: the action and the description of the rule that chose it.
struct RuleDecision {
  /// The action for the tensor.
  TensorAction action = TensorAction::Project;
  std::string rule;  ///< e.g. "regex 'bias$'" or "default: 2-D weight"
};

/// Per-name rules, tried in insertion order; the first rule that matches decides. When none
/// matches, the default applies: `Project` for 2-D tensors (rows > 1 and cols > 1) or for
/// element-wise methods (task arithmetic, TIES, DARE, …), `Average` otherwise (biases, norms,
/// vectors stored as n×1).
class MergeRules {
 public:
  /// Decides from the tensor's name and shape.
  using Predicate = std::function<bool(const std::string& name, Index rows, Index cols)>;

  /// Adds a rule matching names by `std::regex_search` with the ECMAScript grammar.
  MergeRules& add(const std::string& pattern, TensorAction action) {
    std::regex re;
    try {
      re = std::regex(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      throw InvalidArgument(std::string("MergeRules::add: argument 'pattern' = '") + pattern +
                            "' is not a valid ECMAScript regular expression (" + e.what() + ")");
    }
    m_rules.push_back({"regex '" + pattern + "'", action,
                       [re](const std::string& name, Index, Index) { return std::regex_search(name, re); }});
    return *this;
  }

  /// Adds a rule given by a predicate on (name, rows, cols); `description` names it in reports.
  MergeRules& add(std::string description, Predicate predicate, TensorAction action) {
    requireArg(static_cast<bool>(predicate), "MergeRules::add", "predicate", "empty std::function", "a callable");
    m_rules.push_back({std::move(description), action, std::move(predicate)});
    return *this;
  }

  /// Number of user rules.
  std::size_t size() const { return m_rules.size(); }

  /// The decision for a tensor; `elementwiseMethod` selects the default for non-2-D tensors.
  RuleDecision decide(const std::string& name, Index rows, Index cols, bool elementwiseMethod) const {
    for (const auto& r : m_rules)
      if (r.predicate(name, rows, cols)) return {r.action, r.description};
    if (rows > 1 && cols > 1) return {TensorAction::Project, "default: 2-D weight"};
    if (elementwiseMethod) return {TensorAction::Project, "default: element-wise method"};
    return {TensorAction::Average, "default: not a 2-D weight"};
  }

 private:
  struct Rule {
    std::string description;
    TensorAction action;
    Predicate predicate;
  };
  std::vector<Rule> m_rules;
};

/// What happened to one tensor.
struct TensorReport {
  std::string name;                         ///< tensor name ("" for single-tensor use)
  Index index = 0;                          ///< position in the walk (seeds DARE's masks)
  /// Number of rows of the tensor (cols: number of columns).
  Index rows = 0, cols = 0;                 ///< shape
  /// The treatment the tensor received (project, average or skip).
  TensorAction action = TensorAction::Project;
  std::string rule;                         ///< the rule that chose the action
  std::string method;                       ///< what was applied, with its parameters
  Index rank = -1;                          ///< rank parameter used (OPCM split r, TSV k, Iso-CTS k), −1 if none
  double taskNormMean = 0;                  ///< mean Frobenius norm of the task vectors of this tensor
  double deltaNorm = 0;                     ///< Frobenius norm of the merged delta (θ − θ₀) written/kept
  std::vector<std::string> warnings;        ///< anything the caller should know (fallbacks, degenerate inputs)
};

/// The report of one merge (or of one step of a continual merge).
struct MergeReport {
  std::string method;                       ///< the merger and its parameters
  std::vector<TensorReport> tensors;        ///< one entry per visited tensor, in visiting order
  std::vector<std::string> warnings;        ///< model-level warnings
  std::size_t peakResidentBytes = 0;        ///< largest number of tensor bytes the driver held at once
  std::size_t stateBytes = 0;               ///< bytes kept between model arrivals (continual mergers)

  /// Total number of warnings (model-level plus per tensor).
  std::size_t warningCount() const {
    std::size_t n = warnings.size();
    for (const auto& t : tensors) n += t.warnings.size();
    return n;
  }

  /// The entry for `name`, or nullptr.
  const TensorReport* find(const std::string& name) const {
    for (const auto& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }

  /// A human-readable table (one line per tensor, warnings indented below it).
  void print(std::ostream& os) const {
    os << "merge: " << method << "\n";
    for (const auto& w : warnings) os << "  warning: " << w << "\n";
    os << "  " << std::left << std::setw(28) << "tensor" << std::setw(12) << "shape" << std::setw(9) << "action"
       << std::setw(44) << "method" << std::right << std::setw(11) << "mean|tau|" << std::setw(11) << "|delta|" << "\n";
    for (const auto& t : tensors) {
      os << "  " << std::left << std::setw(28) << (t.name.empty() ? std::string("(tensor)") : t.name) << std::setw(12)
         << (std::to_string(t.rows) + "x" + std::to_string(t.cols)) << std::setw(9) << toString(t.action) << std::setw(44)
         << t.method << std::right << std::setw(11) << std::setprecision(4) << t.taskNormMean << std::setw(11)
         << t.deltaNorm << "   [" << t.rule << "]\n";
      for (const auto& w : t.warnings) os << "      warning: " << w << "\n";
    }
    os << std::left;
    os.unsetf(std::ios::adjustfield);
  }
};

}  // namespace wproj
