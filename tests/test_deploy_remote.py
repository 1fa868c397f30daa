"""RemoteSession: an exported module run over RPC equals the local Session and torch."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import tvm_bsp
from tvm_bsp.deploy.remote import connect, parse_address, remote_session
from tvm_bsp.devices.rpc import local_rpc
from tvm_bsp.prune import bsp_mask
from tvm_bsp.runtime import load

I, H, O, T, B = 13, 24, 7, 9, 3
ATOL = 1e-4


class Stack(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.GRU(I, H, 2)
        self.head = nn.Linear(H, O)

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None):
        y, h = self.rnn(x, h)
        return self.head(y), h


def _model(sparse: bool) -> Stack:
    torch.manual_seed(0)
    model = Stack().eval()
    if sparse:
        with torch.no_grad():
            for name, p in model.rnn.named_parameters():
                if name.startswith("weight"):
                    p.mul_(bsp_mask(p.detach(), 6, 2, 2.0, 1.5).float())
    return model


def _torch(model: Stack, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        y, h = model(torch.from_numpy(x))
    return y.numpy(), h.numpy()


def _check_remote(session, local, model: Stack) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, B, I)).astype(np.float32)
    h0 = rng.standard_normal((2, B, H)).astype(np.float32)
    y_r, h_r = session.forward(x, h0)
    y_l, h_l = local.forward(x, h0)
    np.testing.assert_array_equal(y_r, y_l)
    np.testing.assert_array_equal(h_r, h_l)
    with torch.no_grad():
        y_t, h_t = model(torch.from_numpy(x), torch.from_numpy(h0))
    np.testing.assert_allclose(y_r, y_t.numpy(), atol=ATOL)
    np.testing.assert_allclose(h_r, h_t.numpy(), atol=ATOL)
    # streaming: push frame by frame equals the whole utterance from zeros
    session.reset()
    ys = np.stack([session.push(x[t]) for t in range(T)])
    y0, h_last = _torch(model, x)
    np.testing.assert_allclose(ys, y0, atol=ATOL)
    np.testing.assert_allclose(session.state, h_last, atol=ATOL)
    y_s, _ = session.step(x[0])
    np.testing.assert_array_equal(y_s, local.step(x[0])[0])
    assert session.time_step(batch=1, number=3, repeat=2, min_repeat_ms=0) > 0
    with pytest.raises(ValueError, match="features"):
        session.forward(x[..., :-1])


@pytest.fixture(scope="module")
def libraries(tmp_path_factory) -> dict[str, tuple[Path, Stack]]:
    out = tmp_path_factory.mktemp("remote")
    libs = {}
    for sparse in (False, True):
        model = _model(sparse)
        cm = tvm_bsp.compile_model(model, target="host", bspc="auto" if sparse else None)
        assert bool(cm.meta["sparse"]) == sparse
        libs["bspc" if sparse else "dense"] = (cm.export(out / f"m{int(sparse)}.so"), model)
    return libs


def test_parse_address_and_bad_input(tmp_path: Path) -> None:
    assert parse_address("10.0.0.2:9091") == ("10.0.0.2", 9091)
    assert parse_address("9190") == ("127.0.0.1", 9190)
    assert parse_address(("h", 5)) == ("h", 5)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address("host:port")
    with pytest.raises(ValueError, match="port"):
        parse_address("h:70000")
    with pytest.raises(ValueError, match="exactly one"):
        connect()
    with pytest.raises(ValueError, match="key"):
        connect(tracker="127.0.0.1:9190")
    with pytest.raises(FileNotFoundError, match="not found"):
        remote_session(tmp_path / "missing.so", "127.0.0.1:9")
    (tmp_path / "x.tar").write_bytes(b"")
    with pytest.raises(ValueError, match="shared library"):
        remote_session(tmp_path / "x.tar", "127.0.0.1:9")


@pytest.mark.rpc
def test_remote_matches_local_session_and_torch(libraries) -> None:
    key = f"remote-host-{uuid.uuid4().hex[:8]}"
    with local_rpc(key) as (host, port, k):
        for lib, model in libraries.values():
            local = load(lib)
            with remote_session(lib, tracker=(host, port), key=k) as session:
                assert session.meta == local.meta
                _check_remote(session, local, model)


@pytest.mark.rpc
def test_unreachable_server_is_a_clear_error(libraries) -> None:
    from tvm_bsp.devices.rpc import free_port

    lib, _ = libraries["dense"]
    with pytest.raises(ConnectionError, match="cannot reach RPC"):
        remote_session(lib, f"127.0.0.1:{free_port()}")


@pytest.mark.slow
@pytest.mark.aarch64
@pytest.mark.rpc
def test_remote_arm64_under_qemu(libraries, tmp_path: Path) -> None:
    from tvm_bsp.devices.aarch64 import require_arm64

    require_arm64()
    key = f"remote-arm64-{uuid.uuid4().hex[:8]}"
    with local_rpc(key, arm64=True) as (host, port, k):
        for name, (host_lib, model) in libraries.items():
            cm = tvm_bsp.compile_model(
                model, target="arm64", bspc="auto" if name == "bspc" else None
            )
            lib = cm.export(tmp_path / f"{name}-arm64.so")
            local = load(host_lib)  # the same model built for the host: the reference
            with remote_session(lib, tracker=(host, port), key=k, threads=2) as session:
                rng = np.random.default_rng(2)
                x = rng.standard_normal((T, B, I)).astype(np.float32)
                y_r, h_r = session.forward(x)
                y_t, h_t = _torch(model, x)
                np.testing.assert_allclose(y_r, y_t, atol=ATOL)
                np.testing.assert_allclose(h_r, h_t, atol=ATOL)
                np.testing.assert_allclose(y_r, local.forward(x)[0], atol=ATOL)
                session.reset()
                ys = np.stack([session.push(x[t]) for t in range(T)])
                np.testing.assert_allclose(ys, y_t, atol=ATOL)
                assert session.time_step(number=2, repeat=2, min_repeat_ms=0) > 0
