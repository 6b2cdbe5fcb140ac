# Shared by the MPI tests of the wproj tool (mpi_merge.sh, mpi_edit_lora.sh), sourced after
# WPROJ, MPIRUN, DIR and TEST (the ctest name) are set:
#   - finds python3 with NumPy (exit 77, skipped, without it), makes DIR the working folder;
#   - step, die, mpi N CMD…: a heading, a failure, CMD on N ranks;
#   - same_checkpoint A B: the tensors of two checkpoint folders are the same bytes
#     (same_checkpoint.py);
#   - expect_collective_fail PATTERN OUT CMD…: CMD fails, stderr matches PATTERN, and neither OUT
#     nor a staging folder of it is left behind.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3 || true)"
if [ -z "$PY" ] || ! "$PY" -c "import numpy" 2>/dev/null; then
  echo "$TEST skipped: no python3 with NumPy"
  exit 77
fi
rm -rf "$DIR"
mkdir -p "$DIR"
cd "$DIR"
export HERE
step() { echo "== $*"; }
die() { echo "$TEST FAILED: $*" >&2; exit 1; }
mpi() { local n="$1"; shift; "$MPIRUN" -np "$n" "$@"; }
same_checkpoint() { "$PY" "$HERE/same_checkpoint.py" "$@"; }
expect_collective_fail() {
  local pattern="$1" out="$2"; shift 2
  set +e
  "$@" > fail_out.txt 2> fail_err.txt
  local rc=$?
  set -e
  [ $rc -ne 0 ] || die "expected failure: $*"
  grep -q -- "$pattern" fail_err.txt || { cat fail_err.txt; die "expected '$pattern' in stderr: $*"; }
  [ ! -e "$out" ] || die "$out was written by a failed run: $*"
  [ -z "$(ls -a | grep "^\.$out\|^$out\.")" ] || { ls -a; die "staging files of $out left behind: $*"; }
}
