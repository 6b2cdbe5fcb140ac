// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Layer-sharded GaLore refreshes under data parallelism. Every rank holds the same (averaged)
/// gradient of every layer and the same `GradientProjector` of every layer; a refresh step
/// (a truncated or randomized SVD per layer, GaLore: Zhao et al. 2024) is the expensive part.
/// `DistributedRefresh` assigns the layers whose refresh is due to the ranks (largest first by
/// cost), lets each rank refresh only its own layers, and broadcasts each refreshed projector's
/// whole state from its owner, so that afterwards every rank holds bit-identical projectors —
/// the projectors a serial run on the same gradients holds. The refresh work per rank falls as
/// 1/N (up to the balance of the assignment).

#include "../core/config.hpp"
#include "../gradient/projector.hpp"
#include "comm.hpp"

#include <Eigen/Core>

#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

namespace wproj {
namespace mpi {

/// Runs `beginStep` on a set of GaLore projectors (one per layer) with the refreshes shared out
/// over the ranks of a communicator.
///
/// One step, `beginStep(gradients)` (collective; every rank passes the same gradients):
///  1. every projector's shape is fixed/checked (`GradientProjector::init`; an error on any rank
///     throws `CollectiveError` on every rank), and the ranks check that they hold the same set of
///     layers (number, shapes, rank, basis policy, step and schedule: `requireSame`, one hash
///     allgather; a mismatch throws `CollectiveError` on every rank);
///  2. the layers whose refresh is due (no basis yet, or step ≥ nextRefresh) are assigned to ranks
///     by `assignLargestFirst` with cost m·n·r (twice that for a two-sided projector) —
///     deterministic, the same on every rank;
///  3. each rank refreshes its own due layers (`GradientProjector::beginStep`); a failure on any
///     rank throws `CollectiveError` on every rank;
///  4. for each due layer, in layer order, the owner broadcasts the projector's checkpoint
///     (`save`: settings, schedule and adaptive-gap window, statistics, basis state) followed by
///     the transition R = P_oldᵀP_new (r×r; and R_B for two-sided projectors, which checkpoints do
///     not hold) and the step's return value; the other ranks `load` it and copy the transitions;
///  5. layers that are not due run `beginStep` locally (no refresh, no communication).
/// Exception: a basis that tracks every step (online PCA, COAP) computes its FIRST basis on
/// every rank, because the projector's "first step does not track" flag is not in checkpoints;
/// its later refreshes are shared out as above.
///
/// Communication per step: three allreduces of one int (the agreements after the shape checks,
/// the refreshes and the loads; an allgather of the messages only when something failed) and
/// one hash allgather (8 bytes per rank); per due layer one broadcast of an 8-byte length and
/// one of its state: the checkpoint (≈ `stateBytes()`, i.e. ambient·r scalars per factor, plus
/// ~200 bytes of settings, schedule, adaptive-gap window and statistics) + r²·sizeof(Scalar) per
/// factor (the transitions) + 9 bytes. Bytes broadcast per step = Σ over the due layers of those
/// state sizes, e.g. (m + r)·r·4 + ~200 for a float layer projected on its m side; refreshes
/// cost O(Σ m·n·r / N) per rank. `bytesBroadcast()` reports the total of the last step.
template <typename Basis>
class DistributedRefresh {
 public:
  /// The projector type.
  using Projector = GradientProjector<Basis>;
  /// Floating-point type of the projectors.
  using Scalar = typename Projector::Scalar;
  /// Dense matrix type of transitions.
  using Matrix = typename Projector::Matrix;

  /// Shares the refreshes of `projectors` (held by the caller, who must keep it alive and not
  /// resize it between steps without telling every rank) over the ranks of `comm`.
  DistributedRefresh(std::vector<Projector>& projectors, const Communicator& comm)
      : m_projectors(&projectors), m_comm(comm) {}

  /// One step of every layer: `projectors[i].beginStep(gradients[i])`, with the due refreshes
  /// shared out (see the class comment). Returns, per layer, what `beginStep` returns: whether a
  /// new basis replaced a previous one (so `transition()` holds R = P_oldᵀP_new). Collective.
  template <typename Gradient>
  std::vector<bool> beginStep(const std::vector<Gradient>& gradients) {
    const char* where = "wproj::mpi::DistributedRefresh::beginStep";
    std::vector<Projector>& projs = *m_projectors;
    const std::size_t layers = projs.size();
    m_comm.collectively(where, [&] {
      requireArg(gradients.size() == layers, where, "gradients", gradients.size(),
                 "one gradient per projector (" + std::to_string(layers) + ")");
      for (std::size_t i = 0; i < layers; ++i) projs[i].init(gradients[i].rows(), gradients[i].cols());
    });
    std::string layout = std::string(Basis::kName) + " layers " + std::to_string(layers);
    for (const Projector& p : projs)
      layout += " | " + detail::shapeString(p.rows(), p.cols()) + " r" + std::to_string(p.rank()) + " t" +
                std::to_string(int(p.projectionType())) + " s" + std::to_string(p.step()) + " n" +
                std::to_string(p.nextRefresh()) + " b" + (p.hasBasis() ? "1" : "0");
    m_comm.requireSame(layout, "set of GaLore projectors (layers, shapes, ranks, basis, schedule)");

    // Which layers refresh, and who does each one.
    std::vector<bool> result(layers, false), handled(layers, false);
    std::vector<std::size_t> shared, everywhere;
    std::vector<double> costs;
    for (std::size_t i = 0; i < layers; ++i) {
      const Projector& p = projs[i];
      const bool due = !p.hasBasis() || p.step() >= p.nextRefresh();
      if (!due) continue;
      handled[i] = true;
      if (Basis::kTracksSteps && !p.hasBasis()) {
        everywhere.push_back(i);
        continue;
      }
      shared.push_back(i);
      costs.push_back(double(p.rows()) * double(p.cols()) * double(p.rank()) * (p.twoSided() ? 2.0 : 1.0));
    }
    const std::vector<int> owner = assignLargestFirst(costs, m_comm.size());
    m_owners.assign(layers, -1);
    m_refreshedHere = 0;
    m_bytes = 0;

    // Refresh this rank's layers (and the first bases of tracking bases, on every rank).
    m_comm.collectively(where, [&] {
      for (std::size_t j = 0; j < shared.size(); ++j) {
        m_owners[shared[j]] = owner[j];
        if (owner[j] != m_comm.rank()) continue;
        result[shared[j]] = projs[shared[j]].beginStep(gradients[shared[j]]);
        ++m_refreshedHere;
      }
      for (std::size_t i : everywhere) result[i] = projs[i].beginStep(gradients[i]);
    });

    // Broadcast each refreshed projector from its owner.
    std::string error;
    for (std::size_t j = 0; j < shared.size(); ++j) {
      const std::size_t i = shared[j];
      Projector& p = projs[i];
      std::string buffer;
      if (owner[j] == m_comm.rank()) {
        try {
          buffer = pack(p, result[i]);
        } catch (const std::exception& e) {
          buffer.clear();  // the receivers fail on the empty state and report it too
          if (error.empty()) error = "layer " + std::to_string(i) + ": " + e.what();
        }
      }
      m_comm.broadcast(buffer, owner[j]);
      m_bytes += buffer.size();
      if (owner[j] == m_comm.rank() || !error.empty()) continue;
      try {
        result[i] = unpack(buffer, p);
      } catch (const std::exception& e) {
        error = "layer " + std::to_string(i) + ": " + e.what();
      }
    }
    m_comm.agree(error, where);

    // Layers not due: a local beginStep (no refresh).
    for (std::size_t i = 0; i < layers; ++i)
      if (!handled[i]) result[i] = projs[i].beginStep(gradients[i]);
    return result;
  }

  /// The rank that refreshed each layer in the last step (−1: not refreshed, or refreshed on
  /// every rank as the first basis of a tracking basis).
  const std::vector<int>& owners() const { return m_owners; }
  /// Number of layers this rank refreshed in the last step.
  Index refreshedHere() const { return m_refreshedHere; }
  /// Bytes broadcast in the last step (checkpoints + transitions + flags of the refreshed layers).
  std::size_t bytesBroadcast() const { return m_bytes; }

 private:
  // Checkpoint, then the raw transitions (r×r each), then the step's return value.
  static std::string pack(const Projector& p, bool replaced) {
    std::ostringstream os(std::ios::binary);
    p.save(os);
    std::string out = os.str();
    const std::uint64_t saved = out.size();
    std::string head(sizeof(saved), '\0');
    std::memcpy(&head[0], &saved, sizeof(saved));
    out.insert(0, head);
    appendMatrix(out, p.transition());
    if (p.twoSided()) appendMatrix(out, p.transitionRight());
    out.push_back(replaced ? '\1' : '\0');
    return out;
  }

  static bool unpack(const std::string& buffer, Projector& p) {
    std::uint64_t saved = 0;
    if (buffer.size() < sizeof(saved) + 1) throw IoError("DistributedRefresh: truncated projector state");
    std::memcpy(&saved, buffer.data(), sizeof(saved));
    if (saved > buffer.size() - sizeof(saved) - 1) throw IoError("DistributedRefresh: truncated projector state");
    std::istringstream is(buffer.substr(sizeof(saved), std::size_t(saved)), std::ios::binary);
    p.load(is);
    std::size_t offset = sizeof(saved) + std::size_t(saved);
    // Checkpoints do not hold the transitions: they follow the checkpoint in the message.
    Matrix left, right;
    readMatrix(buffer, offset, left, p.rank());
    if (p.twoSided()) readMatrix(buffer, offset, right, p.rank());
    p.setTransitions(left, right);
    if (offset + 1 != buffer.size()) throw IoError("DistributedRefresh: projector state has the wrong size");
    return buffer[offset] != '\0';
  }

  static void appendMatrix(std::string& out, const Matrix& m) {
    out.append(reinterpret_cast<const char*>(m.data()), std::size_t(m.size()) * sizeof(Scalar));
  }

  static void readMatrix(const std::string& in, std::size_t& offset, Matrix& m, Index r) {
    const std::size_t bytes = std::size_t(r) * std::size_t(r) * sizeof(Scalar);
    if (offset + bytes > in.size()) throw IoError("DistributedRefresh: truncated transition");
    m.resize(r, r);
    std::memcpy(m.data(), in.data() + offset, bytes);
    offset += bytes;
  }

  std::vector<Projector>* m_projectors;
  Communicator m_comm;
  std::vector<int> m_owners;
  Index m_refreshedHere = 0;
  std::size_t m_bytes = 0;
};

}  // namespace mpi
}  // namespace wproj
