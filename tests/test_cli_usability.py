"""What a new user trips over in the CLI (issue 13, "Also found"): each checked as they meet it.

- ``tvm-bsp rpc-server`` ended by ``kill PID`` (or killed outright) leaves no process behind;
- ``tvm-bsp tune`` against a tracker it cannot reach fails at once, naming the address;
- bad ``--target`` is a usage error (exit 2) listing the valid targets;
- ``deploy --wav`` checks the file before compiling and resamples 22050 Hz (espeak-ng) audio.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from tvm_bsp.devices.rpc import free_port

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for init to reap it counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def _descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (from /proc, independent of the code under test)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return [p for p in out if _alive(p)]


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if _alive(p)]


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# a child that starts a grandchild (as tvm.exec.rpc_server starts its popen_worker), writes
# both pids, then waits; with IGNORE it ignores SIGTERM and SIGINT
_CHILD = """
import os, signal, subprocess, sys, time
if sys.argv[2] == "IGNORE":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
open(sys.argv[1] + ".tmp", "w").write(f"{os.getpid()} {g.pid}")
os.replace(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(float(sys.argv[3]))
sys.exit(3)
"""

_PARENT = """
import sys
from tvm_bsp.devices.supervise import supervised_call
sys.exit(supervised_call([sys.executable, "-c", sys.argv[1], *sys.argv[2:]], grace=0.5))
"""


def _start_supervised(tmp_path: Path, mode: str = "PLAIN", life: float = 600.0):
    pids = tmp_path / "pids"
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, _CHILD, str(pids), mode, str(life)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while not pids.exists():
        assert parent.poll() is None, parent.communicate()
        assert time.monotonic() < deadline, "the supervised child did not start"
        time.sleep(0.05)
    child, grandchild = map(int, pids.read_text().split())
    guard = _descendants(parent.pid)
    assert child in guard and grandchild in guard
    return parent, _descendants(parent.pid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_a_stop_signal_ends_the_child_and_its_children(tmp_path: Path, sig: int) -> None:
    parent, tree = _start_supervised(tmp_path)
    try:
        parent.send_signal(sig)
        assert parent.wait(timeout=20) == 0
        assert _wait_gone(tree, 5) == []
    finally:
        _kill_all([parent.pid, *tree])


def test_killing_the_parent_outright_ends_the_child_and_its_children(tmp_path: Path) -> None:
    parent, tree = _start_supervised(tmp_path)
    try:
        parent.kill()  # SIGKILL: no handler runs in the parent
        parent.wait(timeout=10)
        assert _wait_gone(tree, 10) == []
    finally:
        _kill_all(tree)


def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    parent, tree = _start_supervised(tmp_path, "IGNORE")
    try:
        t0 = time.monotonic()
        parent.terminate()
        assert parent.wait(timeout=20) == 0
        assert _wait_gone(tree, 5) == []
        assert time.monotonic() - t0 < 10
    finally:
        _kill_all([parent.pid, *tree])


def test_the_exit_code_passes_through_and_leftovers_are_ended(tmp_path: Path) -> None:
    parent, tree = _start_supervised(tmp_path, "PLAIN", life=1.0)
    try:
        assert parent.wait(timeout=30) == 3  # the child's own exit code
        assert _wait_gone(tree, 5) == []  # its grandchild did not outlive it
    finally:
        _kill_all([parent.pid, *tree])


def _port_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@pytest.mark.slow
@pytest.mark.rpc
def test_rpc_server_ended_by_kill_frees_its_port_and_leaves_no_process() -> None:
    port = free_port()
    tracker = free_port()  # nothing listens there: the server binds first, then retries
    env = {**_env(), "TVM_USE_RUNTIME_LIB": "1"}
    argv = [sys.executable, "-m", "tvm_bsp", "rpc-server", "--tracker", f"127.0.0.1:{tracker}"]
    argv += ["--key", "usability", "--port", str(port), "--port-end", str(port + 1)]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    tree: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not _port_bound(port):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the RPC server did not bind its port"
            time.sleep(0.2)
        tree = _descendants(proc.pid)
        assert len(tree) >= 3  # guard, tvm.exec.rpc_server, its popen_worker
        proc.send_signal(signal.SIGTERM)  # what `kill PID` sends
        assert proc.wait(timeout=30) == 0
        assert _wait_gone(tree, 10) == []
        assert not _port_bound(port)
    finally:
        _kill_all([proc.pid, *tree])


# --------------------------------------------------------------------------- tune + tracker
def _run_cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tvm_bsp", *argv],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _closed_port() -> int:
    port = free_port()
    assert not _port_bound(port)
    return port


def test_tune_against_a_tracker_that_never_ran_fails_at_once(tmp_path: Path) -> None:
    bspc = tmp_path / "bspc"
    bspc.mkdir()
    (bspc / "index.json").write_text("{}")  # never read: the tracker is checked first
    port = _closed_port()
    t0 = time.monotonic()
    proc = _run_cli(
        "tune", "--db", str(tmp_path / "db"), "--tracker", f"127.0.0.1:{port}",
        "--key", "rk3399", str(bspc),
    )  # fmt: skip
    elapsed = time.monotonic() - t0
    assert proc.returncode == 1, proc.stderr
    assert "never connected to device 'rk3399'" in proc.stderr
    assert f"127.0.0.1:{port}" in proc.stderr and "refused" in proc.stderr.lower()
    assert "no longer registered" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert elapsed < 60  # TVM's client retried 60 s before; the rest is importing TVM
    assert not (tmp_path / "db").exists() or not any((tmp_path / "db").iterdir())


def test_tracker_check_of_a_port_that_is_not_a_tracker() -> None:
    from tvm_bsp.devices.tracker import TrackerError, check_tracker, tracker_problem

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        port = srv.getsockname()[1]

        def answer_garbage() -> None:
            for _ in range(2):
                conn, _ = srv.accept()
                with conn:
                    conn.recv(4)
                    conn.sendall(b"HTTP")

        import threading

        thread = threading.Thread(target=answer_garbage, daemon=True)
        thread.start()
        problem = tracker_problem("127.0.0.1", port, "k", timeout=5)
        assert problem == f"127.0.0.1:{port} answers, but it is not a TVM RPC tracker"
        with pytest.raises(TrackerError, match="never connected to device 'k'"):
            check_tracker("127.0.0.1", port, "k", timeout=5)
        thread.join(5)


def test_tracker_check_times_out_on_a_silent_port() -> None:
    from tvm_bsp.devices.tracker import tracker_problem

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)  # accepts (kernel backlog) but never answers
        port = srv.getsockname()[1]
        t0 = time.monotonic()
        problem = tracker_problem("127.0.0.1", port, "k", timeout=0.5)
        assert time.monotonic() - t0 < 5
    assert problem == f"the RPC tracker at 127.0.0.1:{port} did not answer in 0.5 s"


@pytest.mark.slow
@pytest.mark.rpc
def test_tracker_check_names_the_missing_key_and_the_registered_ones() -> None:
    from tvm_bsp.devices.rpc import local_rpc
    from tvm_bsp.devices.tracker import check_tracker, tracker_problem

    with local_rpc("usability-present") as (host, port, key):
        check_tracker(host, port, key)  # registered: no error
        problem = tracker_problem(host, port, "absent")
    assert problem == (
        f"no device is registered under key 'absent' with the RPC tracker at {host}:{port} "
        "(registered keys: 'usability-present')"
    )


def test_times_are_rounded_for_people() -> None:
    from tvm_bsp.tune.runner import format_us

    assert format_us(0.15313938337309602) == "0.153 us"
    assert format_us(12.3456) == "12.3 us"
    assert format_us(3.14159) == "3.14 us"
    assert format_us(1234.56) == "1235 us"
    assert format_us(None) == "-"


# --------------------------------------------------------------------------- bad --target
@pytest.mark.parametrize("command", ["compile", "deploy", "tune"])
def test_unknown_target_is_a_usage_error_listing_the_targets(tmp_path: Path, command: str):
    from tvm_bsp.deploy.targets import DEPLOY_TARGETS

    extra = {
        "compile": ["-o", str(tmp_path / "m.so")],
        "deploy": ["--out", str(tmp_path / "out")],
        "tune": ["--db", str(tmp_path / "db")],
    }[command]
    proc = _run_cli(command, str(tmp_path / "model.pt"), *extra, "--target", "sparc")
    assert proc.returncode == 2, proc.stderr
    assert "unknown target 'sparc'" in proc.stderr
    for name in DEPLOY_TARGETS:
        assert name in proc.stderr
    assert "Traceback" not in proc.stderr


# --------------------------------------------------------------------------- --wav input
def _tone(rate: int, freqs: dict[float, float], secs: float = 1.0) -> np.ndarray:
    t = np.arange(int(rate * secs)) / rate
    return sum(a * np.sin(2 * np.pi * f * t) for f, a in freqs.items())


def _write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1) -> Path:
    data = np.repeat(np.round(samples).astype("<i2")[:, None], channels, axis=1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    return path


def test_a_22050_hz_wav_is_resampled_to_16_khz(tmp_path: Path, capsys) -> None:
    from tvm_bsp.cli.wav import wav_samples

    tones = {440.0: 8000.0, 1700.0: 3000.0, 5200.0: 1500.0}
    # a 10 kHz tone cannot exist at 16 kHz: the resampler must filter it, not alias it
    wav = _write_wav(tmp_path / "espeak.wav", _tone(22050, {**tones, 10_000.0: 2000.0}), 22050, 2)
    x = wav_samples(wav)
    assert "22050 Hz; resampled to the models' 16000 Hz" in capsys.readouterr().err
    ref = _tone(16000, tones)  # the same signal, generated at 16 kHz
    assert abs(len(x) - len(ref)) <= 1
    n = min(len(x), len(ref))
    assert np.abs(x[200 : n - 200] - ref[200 : n - 200]).max() < 0.005 * 8000


def test_a_16_khz_wav_is_taken_as_it_is(tmp_path: Path, capsys) -> None:
    from tvm_bsp.cli.wav import wav_samples

    samples = np.round(_tone(16000, {300.0: 5000.0}, 0.2))
    x = wav_samples(_write_wav(tmp_path / "a.wav", samples, 16000))
    np.testing.assert_array_equal(x, samples.astype(np.float32))
    assert capsys.readouterr().err == ""


def test_wav_input_is_checked_before_compiling(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not a wav file at all")
    out = tmp_path / "out"
    # the model file does not even exist: the WAV is refused first, nothing compiled
    proc = _run_cli("deploy", str(tmp_path / "model.pt"), "--out", str(out), "--wav", str(bad))
    assert proc.returncode == 1
    assert f"{bad} is not a PCM WAV file" in proc.stderr
    assert not (out / "model.so").exists()
    short = _write_wav(tmp_path / "short.wav", np.zeros(100), 22050)
    proc = _run_cli("deploy", str(tmp_path / "model.pt"), "--out", str(out), "--wav", str(short))
    assert proc.returncode == 1 and "too short for one 25 ms frame" in proc.stderr


def test_a_22050_hz_wav_reaches_the_model_step(tmp_path: Path) -> None:
    wav = _write_wav(tmp_path / "hello.wav", _tone(22050, {500.0: 4000.0}, 0.5), 22050)
    model = tmp_path / "missing.pt"
    proc = _run_cli("deploy", str(model), "--out", str(tmp_path / "out"), "--wav", str(wav))
    assert "resampled to the models' 16000 Hz" in proc.stderr
    assert "sample rate" not in proc.stderr  # not refused for its rate
    features = np.load(tmp_path / "out" / "hello.npy")
    assert features.shape == (48, 39)  # 0.5 s at a 10 ms shift, 25 ms window: 1 + (8000-400)//160
    assert proc.returncode == 1 and str(model) in proc.stderr  # then: the model is missing


# --------------------------------------------------------------------------- demo results
def _demo_result(build: str, target: str, library: Path):
    from tvm_bsp.experiments.demo.builds import BuildResult

    return BuildResult(build, target, 30.0, 50.0, 10.0, 1, target == "arm64", 1.0, 1, 1, 1, 0.005,
                       library=str(library))  # fmt: skip


def test_demo_prints_its_files_and_runnable_next_commands(tmp_path: Path, monkeypatch) -> None:
    import shlex

    from tvm_bsp.cli import build_parser
    from tvm_bsp.experiments.demo.report import format_next_steps

    monkeypatch.chdir(tmp_path)
    work = tmp_path / ".cache" / "demo"
    libs = {(b, t): work / "builds" / f"{b}-{t}.so" for b in ("dense", "bspc") for t in ("host",)}
    results = [_demo_result(b, t, p) for (b, t), p in libs.items()]
    text = format_next_steps(
        work / "dense-abc.pt", work / "bsp10-def" / "model.pt", work / "bsp10-def" / "bspc", results
    )
    assert ".cache/demo/dense-abc.pt" in text and ".cache/demo/bsp10-def/model.pt" in text
    for path in libs.values():
        assert str(path.relative_to(tmp_path)) in text
    commands = [line.split("#")[0].strip() for line in text.splitlines() if "tvm-bsp " in line]
    deploys = [c for c in commands if c.startswith("tvm-bsp deploy")]
    assert deploys and deploys[0].split()[2] == ".cache/demo/builds/bspc-host.so"
    for command in commands:  # every printed command parses with the real parser
        args = build_parser().parse_args(shlex.split(command)[1:])
        assert args.command in ("deploy", "tune")


@pytest.mark.slow
def test_a_demo_library_deploys_on_a_22050_hz_wav_like_torch_decodes(tmp_path: Path) -> None:
    import torch

    from tvm_bsp.experiments.demo.builds import compile_and_export
    from tvm_bsp.experiments.demo.run import _labels
    from tvm_bsp.experiments.demo.settings import quick_settings
    from tvm_bsp.speech.model import AcousticModel, ModelConfig
    from tvm_bsp.speech.phones import PHONES_39
    from tvm_bsp.speech.scoring import smoothed_framewise_decode

    torch.manual_seed(0)
    model = AcousticModel(ModelConfig(cell="gru", hidden=16, layers=1)).eval()
    settings = quick_settings()
    lib, _ = compile_and_export(
        model, None, "host", tmp_path / "dense-host.so", lambda _m: None, _labels(settings)
    )
    assert (tmp_path / "dense-host.so.json").is_file()
    wav = _write_wav(tmp_path / "hello.wav", _tone(22050, {500.0: 4000.0, 2100.0: 900.0}), 22050)
    out = tmp_path / "deploy"
    proc = _run_cli("deploy", str(lib), "--target", "host", "--out", str(out), "--wav", str(wav))
    assert proc.returncode == 0, proc.stderr
    feats = torch.from_numpy(np.load(out / "hello.npy"))
    with torch.no_grad():
        scores = model(feats[:, None, :])[:, 0]
    ids = smoothed_framewise_decode(scores, settings.smooth, settings.min_run)
    phones = next(line for line in proc.stdout.splitlines() if line.startswith("phones:"))
    assert phones.split()[1:] == [PHONES_39[i] for i in ids]


@pytest.mark.slow
def test_tune_output_is_rounded_and_quiet_unless_verbose(tmp_path: Path) -> None:
    import re

    import torch

    from tvm_bsp.prune import bsp_mask_at_rate, export_bspc

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 32))
    with torch.no_grad():
        w = model[0].weight
        mask = np.asarray(bsp_mask_at_rate(w.numpy(), 4, 4, 4.0, 2.0))
        w.mul_(torch.from_numpy(mask.astype(np.float32)))
    export_bspc(model, {"0.weight": mask}, tmp_path / "bspc", grid=(4, 4))
    outputs = {}
    for verbose in (False, True):
        db = tmp_path / f"db-{verbose}"
        argv = ["tune", "--trials", "1", "--db", str(db), str(tmp_path / "bspc")]
        proc = _run_cli(*argv, *(["--verbose"] if verbose else []), timeout=300)
        assert proc.returncode == 0, proc.stderr
        outputs[verbose] = proc.stdout + proc.stderr
    quiet = outputs[False]
    assert "load_module" not in quiet and " INFO " not in quiet
    assert "load_module" in outputs[True]  # the line is there, just silenced by default
    line = next(x for x in quiet.splitlines() if x.strip().startswith("default"))
    times = re.findall(r"(\d+\.?\d*) us", line)
    assert len(times) == 2 and all(len(t.replace(".", "").lstrip("0")) <= 3 for t in times)
