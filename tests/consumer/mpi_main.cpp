// A downstream program of wproj's MPI layer: sums a vector over the ranks and checks the result.
#include <wproj/mpi/comm.hpp>

#include <Eigen/Core>

#include <iostream>

int main(int argc, char** argv) {
  wproj::mpi::Environment env(&argc, &argv);
  const wproj::mpi::Communicator comm;
  Eigen::VectorXd v = Eigen::VectorXd::Constant(3, double(comm.rank() + 1));
  comm.allreduceSum(v);
  const double expect = double(comm.size()) * double(comm.size() + 1) / 2;
  if (v != Eigen::VectorXd::Constant(3, expect)) {
    std::cerr << "consumer_mpi: allreduce gave " << v.transpose() << ", expected " << expect << "\n";
    return 1;
  }
  if (comm.rank() == 0) std::cout << "wproj::mpi consumer: allreduce over " << comm.size() << " rank(s) ok\n";
  return 0;
}
