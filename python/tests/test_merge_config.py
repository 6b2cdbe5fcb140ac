import json

import numpy as np
import pytest

import wproj
from wproj import io


def _write_family(tmp_path, rng):
    base = {"layer.weight": rng.standard_normal((6, 5)).astype(np.float32),
            "layer.bias": rng.standard_normal(6).astype(np.float32)}
    models = [{k: v + 0.1 * rng.standard_normal(v.shape).astype(np.float32) for k, v in base.items()} for _ in range(2)]
    paths = []
    for name, tensors in [("base", base), ("m1", models[0]), ("m2", models[1])]:
        (tmp_path / name).mkdir()
        io.save_safetensors(tmp_path / name / "model.safetensors", tensors)
        paths.append(tmp_path / name)
    return base, models, paths


def _needs_tool():
    if not wproj._core.merge_available:
        with pytest.raises(RuntimeError, match="not available"):
            wproj.merge("config.yml", "out.safetensors")
        pytest.skip("wproj.merge: built without the command-line tool's dependencies")


def test_two_model_merge_matches_numpy(tmp_path, rng):
    _needs_tool()
    base, models, (pb, p1, p2) = _write_family(tmp_path, rng)
    cfg = tmp_path / "merge.yml"
    cfg.write_text(f"""merge_method: task_arithmetic
base_model: {pb}
models:
  - model: {p1}
    parameters:
      weight: 0.7
  - model: {p2}
    parameters:
      weight: 0.4
dtype: float32
""")
    out = tmp_path / "merged.safetensors"
    report = wproj.merge(cfg, out, threads=1)
    assert isinstance(report, dict)
    assert json.dumps(report)
    merged = io.load_safetensors(out)
    for k, b in base.items():
        ref = b + 0.7 * (models[0][k] - b) + 0.4 * (models[1][k] - b)
        np.testing.assert_allclose(merged[k], ref, atol=1e-6)
    # Dry run: a plan, nothing written.
    out2 = tmp_path / "dry.safetensors"
    plan = wproj.merge(cfg, out2, dry_run=True)
    assert plan["dry_run"] and "layer.weight" in plan["plan"]
    assert not out2.exists()


def test_bad_config_is_a_value_error(tmp_path, rng):
    _needs_tool()
    _, _, (pb, p1, _) = _write_family(tmp_path, rng)
    cfg = tmp_path / "bad.yml"
    cfg.write_text(f"merge_method: no_such_method\nbase_model: {pb}\nmodels:\n  - model: {p1}\n")
    with pytest.raises(ValueError, match="no_such_method"):
        wproj.merge(cfg, tmp_path / "o.safetensors")
    with pytest.raises(ValueError, match="threads"):
        wproj.merge(cfg, tmp_path / "o.safetensors", threads=0)
