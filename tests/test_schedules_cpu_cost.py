"""The CPU cost model that suggests knob values for a matrix."""

import numpy as np

from tvm_bsp.bspc import BSPCMatrix
from tvm_bsp.prune import bsp_mask
from tvm_bsp.schedules import resolve_config, resolve_target, spmm_template
from tvm_bsp.schedules.cpu_cost import estimate_ns, suggest_spmm_config, vector_lanes


def _matrix(M, N, rb, cb, col_rate, row_rate):
    weight = np.random.default_rng(0).standard_normal((M, N)).astype(np.float32)
    return BSPCMatrix.from_dense(weight, bsp_mask(weight, rb, cb, col_rate, row_rate), rb, cb)


def test_suggestions_are_valid_configs():
    host = resolve_target("host")
    template = spmm_template(host)
    matrix = _matrix(256, 128, 8, 4, 4, 2)
    for batch in (1, 3, 32):
        knobs = template.knobs(batch)
        config = suggest_spmm_config(matrix, batch, host, knobs)
        assert resolve_config(knobs, config) == config
        if batch > 1:
            assert config["row_order"] == "natural"  # scattered frames cost more than padding


def test_small_work_stays_on_one_thread_and_big_work_uses_all():
    host = resolve_target("host")
    template = spmm_template(host)
    small = template.config(1, None, _matrix(64, 32, 2, 2, 4, 4))
    assert small["threads"] == 1
    big = _matrix(3072, 1024, 96, 16, 1, 1)
    knobs = template.knobs(32)
    config = suggest_spmm_config(big, 32, host, knobs)
    assert config["threads"] == knobs[[k.name for k in knobs].index("threads")].default


def test_user_config_overrides_the_suggestion():
    template = spmm_template(resolve_target("host"))
    matrix = _matrix(64, 32, 2, 2, 4, 4)
    assert template.config(1, {"panel_rows": 8}, matrix)["panel_rows"] == 8


def test_estimate_grows_with_padding_and_frames():
    matrix = _matrix(512, 256, 16, 4, 2, 1)
    config = {"panel_rows": 16, "row_order": "natural", "batch_tile": 1, "threads": 1}
    one = estimate_ns(matrix, 1, config, 16, cols=1000)
    assert estimate_ns(matrix, 1, config, 16, cols=2000) > one
    assert estimate_ns(matrix, 4, config, 16, cols=1000) > one


def test_vector_lanes():
    assert vector_lanes(resolve_target("arm64")) == 4
    assert vector_lanes(resolve_target("host")) in (4, 8, 16)
