"""Shared test settings: hypothesis profiles (CI runs more examples), the tiny corpus."""

import os

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", max_examples=40, deadline=None)
settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    """A 40/10/10-utterance synthetic corpus (seed 3) and its loaded splits."""
    from tvm_bsp.speech.corpus import generate_corpus, load_split

    root = tmp_path_factory.mktemp("tiny") / "corpus"
    generate_corpus(root, 40, 10, 10, seed=3, progress=False)
    return root, {s: load_split(root, s) for s in ("train", "dev", "test")}
