#!/usr/bin/env python3
"""Regenerates the reference files in this folder with NumPy (and PyTorch for bfloat16).

They are oracles written by independent code: arrays in every layout/version the reader
supports, and correctly rounded f16/bf16 bit patterns of tricky float64 inputs.
Run with Debian's /usr/bin/python3 (python3-numpy, python3-torch).
"""
import os

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
p = lambda n: os.path.join(here, n)

a = (np.arange(6, dtype=np.float64).reshape(2, 3) - 2.5) / 4  # [[-0.625, -0.375, -0.125], [0.125, 0.375, 0.625]]
np.save(p("c_f4_2x3.npy"), a.astype(np.float32))
np.save(p("fortran_f8_2x3.npy"), np.asfortranarray(a))
np.save(p("vec_f2_6.npy"), a.ravel().astype(np.float16))
np.save(p("i4_2x3.npy"), (np.arange(6, dtype=np.int32).reshape(2, 3) - 3))
np.save(p("u1_2x3.npy"), np.arange(6, dtype=np.uint8).reshape(2, 3) * 40)
with open(p("v2_f4_2x3.npy"), "wb") as f:
    np.lib.format.write_array(f, a.astype(np.float32), version=(2, 0))
with open(p("v3_f8_2x3.npy"), "wb") as f:
    np.lib.format.write_array(f, a, version=(3, 0))
np.save(p("scalar_f8.npy"), np.float64(-0.625))

# Rounding oracle: float64 inputs with ties, subnormals, overflow, NaN/Inf.
rng = np.random.default_rng(7)
special = [0.0, -0.0, 1.0, -1.0, 65504.0, 65519.99, 65520.0, 1e5, -1e5, 6.1e-5, 5.96e-8, 2.98e-8, 2.99e-8, 1e-9,
           1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11, 1.0 + 2.0**-8, 1.0 + 3 * 2.0**-8, 3.3895313892515355e38, 3.4e38, 1e39,
           1e-39, 1e-45, 9.2e-41, np.inf, -np.inf, np.nan]
x = np.concatenate([np.array(special), rng.standard_normal(200) * np.exp(rng.uniform(-30, 30, 200)),
                    (np.arange(-64, 64) / 64.0) * 2.0**-14 * 1.00048828125])
np.save(p("round_inputs_f8.npy"), x)
np.save(p("round_f16_bits.npy"), x.astype(np.float16).view(np.uint16))
try:
    import torch
    t = torch.from_numpy(x).to(torch.bfloat16)  # correctly rounded from float64
    np.save(p("round_bf16_bits.npy"), t.view(torch.int16).numpy().view(np.uint16))
except ImportError:
    pass
