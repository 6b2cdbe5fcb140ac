# Shared by scripts/test and scripts/demo (sourced).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
jobs="$(nproc 2>/dev/null || echo 2)"
# OpenBLAS backend when it is installed (it is after install-deps).
blas=OFF
if pkg-config --exists openblas 2>/dev/null || [ -e /usr/lib/x86_64-linux-gnu/libopenblas.so ] || ls /usr/lib/*/libopenblas.so >/dev/null 2>&1; then
  blas=ON
fi
# The Python package is built for, tested with and installed into Debian's interpreter, whose
# NumPy/pytest come from Debian packages (a python3 earlier on PATH, e.g. pyenv's, may lack them).
py=/usr/bin/python3
[ -x "$py" ] || py="$(command -v python3)"
