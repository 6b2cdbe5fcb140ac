// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Deterministic partitions of work over P parts (ranks of the MPI layer, processes of a sharded
/// merge): contiguous row blocks and largest-first assignment of items by cost. Pure functions:
/// every part computes the same answer without communicating.

#include "config.hpp"

#include <algorithm>
#include <numeric>
#include <vector>

namespace wproj {

/// Rows [first, first + count) of a block partition of `total` rows over `size` ranks: the first
/// total % size ranks hold one row more. The partition wproj's row-distributed matrices use.
struct RowRange {
  Index first = 0;
  Index count = 0;
};

/// Rank `rank`'s part of the block partition of `total` rows over `size` ranks.
inline RowRange blockRows(Index total, int rank, int size) {
  requireArg(total >= 0, "wproj::blockRows", "total", total, ">= 0");
  requireArg(size >= 1, "wproj::blockRows", "size", size, ">= 1");
  requireArg(rank >= 0 && rank < size, "wproj::blockRows", "rank", rank, "in [0, size)");
  const Index base = total / size, extra = total % size;
  RowRange r;
  r.count = base + (rank < extra ? 1 : 0);
  r.first = Index(rank) * base + std::min<Index>(rank, extra);
  return r;
}

/// Largest-first (LPT) assignment of work items with the given costs to `ranks` ranks: items in
/// decreasing cost (ties: lower index first) each go to the least-loaded rank (ties: lower rank).
/// Deterministic, so every rank computes the same assignment; its makespan is at most 4/3 of the
/// optimum (Graham 1969). Returns the owner rank of each item.
inline std::vector<int> assignLargestFirst(const std::vector<double>& costs, int ranks) {
  requireArg(ranks >= 1, "wproj::assignLargestFirst", "ranks", ranks, ">= 1");
  std::vector<std::size_t> order(costs.size());
  std::iota(order.begin(), order.end(), std::size_t(0));
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return costs[a] > costs[b]; });
  std::vector<double> load(std::size_t(ranks), 0.0);
  std::vector<int> owner(costs.size(), 0);
  for (std::size_t i : order) {
    const int r = int(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = r;
    load[std::size_t(r)] += std::max(costs[i], 0.0);
  }
  return owner;
}

}  // namespace wproj
