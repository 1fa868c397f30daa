"""``tvm-bsp compile``, ``tvm-bsp deploy`` and ``tvm-bsp bench``.

``tvm-bsp compile MODEL.pt --target arm64 -o model.so [--bspc auto|DIR] [--db DIR]``
    Compile a saved model (see :mod:`tvm_bsp.compiler.model_file`) for a named target
    (:mod:`tvm_bsp.deploy.targets`) into one ``.so`` with the weights inside, plus the sidecar
    ``model.so.json`` (phone names and decoding, :mod:`tvm_bsp.runtime.labels`).
``tvm-bsp deploy MODEL.pt|MODEL.so --target T --out DIR [--wav F | --features F]``
    Compile (or take) the ``.so`` into ``DIR/model.so`` and, given an input, run the runtime-only
    runner (:mod:`tvm_bsp.runtime.runner`) on it: here, under qemu for ``arm64`` when the
    emulator is set up, else print the command for the device.
``tvm-bsp bench gru|spmv [--quick] [--json PATH]``
    The benchmarks of :mod:`tvm_bsp.experiments.bench`.

Exit codes: 0 success, 1 a failure (message on stderr), 2 bad usage. Heavy imports (torch,
TVM's compiler) happen inside the handlers.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tvm_bsp.cli.args import add_command, add_compile_options, add_model_options, bspc_source, fail
from tvm_bsp.cli.wav import wav_features
from tvm_bsp.deploy.shipped import RUNNER_MODULE, runtime_files

_COMPILE_HELP = "compile a saved GRU/LSTM model (dense or BSPC) into one deployable .so"
_COMPILE_DESCRIPTION = (
    "Compile a model saved by 'tvm-bsp train'/'prune' (or save_rnn_module) for "
    "a named target into one shared library (weights embedded) that the TVM runtime alone "
    "loads (tvm_bsp.runtime.load), plus MODEL.so.json with the output label names."
)


def add_compile_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tvm-bsp compile``; return its parser."""
    p = add_command(subparsers, "compile", run_compile, _COMPILE_HELP, _COMPILE_DESCRIPTION)
    add_model_options(p)
    p.add_argument("-o", "--output", type=Path, required=True, help="the .so to write")
    add_compile_options(p)
    return p


_DEPLOY_HELP = "compile (or take) a .so into a directory and run it on a WAV/feature file"
_DEPLOY_DESCRIPTION = (
    "Write DIR/model.so (+ model.so.json) for a target, compiling MODEL.pt "
    "first if given one; with --wav or --features, run the runtime-only runner on it "
    "(here, under qemu for arm64 when the emulator is set up, or print the command to run "
    "on the device) and print phones, per-frame latency and the real-time factor."
)


def add_deploy_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tvm-bsp deploy``; return its parser."""
    p = add_command(subparsers, "deploy", run_deploy, _DEPLOY_HELP, _DEPLOY_DESCRIPTION)
    add_model_options(p, compiled=True)
    p.add_argument("--out", type=Path, required=True, help="output directory")
    add_compile_options(p)
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--wav", type=Path, help="16-bit PCM WAV (resampled to 16 kHz if needed; features here)"
    )
    source.add_argument("--features", type=Path, help="(T, 39) float32 features .npy/.npz")
    p.add_argument(
        "--utterance", action="store_true", help="the runner calls forward once (not per frame)"
    )
    return p


def add_bench_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``tvm-bsp bench gru|spmv``; return its parser."""
    from tvm_bsp.experiments.bench import gru, spmv

    p = subparsers.add_parser(
        "bench",
        help="benchmarks: GRU per-frame latency (gru), BSPC kernels (spmv)",
        description="Run a benchmark on this machine and print its table (--json: records).",
    )
    sub = p.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    for name, module in (("gru", gru), ("spmv", spmv)):
        doc = (module.__doc__ or name).split("\n\n")[0]
        b = sub.add_parser(name, help=doc, description=doc)
        module.add_arguments(b)
        b.set_defaults(handler=module.run_args)
    return p


def _progress(message: str) -> None:
    """A progress line of a long step (stderr)."""
    print(f"tvm-bsp: {message}", file=sys.stderr, flush=True)


def compile_to(args: argparse.Namespace, output: Path) -> tuple[Path, Path, Any]:
    """Compile ``args.model`` for ``args.target`` into ``output`` plus its sidecar.

    Returns
    -------
    (pathlib.Path, pathlib.Path, CompiledModel)
        The ``.so``, the sidecar and the compiled model.
    """
    from tvm_bsp.deploy.targets import export_library, get_deploy_target
    from tvm_bsp.runtime.labels import make_labels, write_labels

    deploy = get_deploy_target(args.target)
    deploy.check_compiler()  # fail before compiling: TVM_NDK_CC, cross gcc
    if args.db is not None and not args.db.is_dir():
        raise FileNotFoundError(f"--db {args.db}: no such tuning database directory")
    from tvm_bsp.compiler.model_file import load_model_file

    loaded = load_model_file(args.model)
    bspc = bspc_source(args.bspc, args.model)
    import tvm_bsp

    knobs = None if args.threads is None else {"threads": args.threads}
    tuned = None if args.db is None else str(args.db)
    record = make_labels(
        loaded.labels, loaded.head, loaded.decode, target=deploy.name, source=str(args.model)
    )
    cm = tvm_bsp.compile_model(
        loaded.module,
        deploy.target_dict(),
        bspc,
        tuned,
        knobs=knobs,
        extra_meta={"labels": record},  # the .so alone is enough for the runner
    )
    so = export_library(cm.executable, deploy.name, output)
    record["sparse"] = list(cm.meta.get("sparse", []))
    return so, write_labels(so, record), cm


def run_compile(args: argparse.Namespace) -> int:
    """Handler of ``tvm-bsp compile``."""
    try:
        so, sidecar, cm = compile_to(args, args.output)
    except NotImplementedError as err:
        return fail("compile", str(err))
    except RuntimeError as err:  # compiler / linker failures
        return fail("compile", str(err))
    sparse = cm.meta.get("sparse", [])
    print(
        f"wrote {so} ({so.stat().st_size / 1024:.0f} KiB; {cm.meta['cell']} "
        f"{cm.meta['layers']}x{cm.meta['hidden_size']}, "
        f"{len(sparse)} BSPC weight(s){': ' + ', '.join(sparse) if sparse else ''}) "
        f"and {sidecar}"
    )
    return 0


# --------------------------------------------------------------------------- deploy
def _copy_atomic(src: Path, dest: Path) -> Path:
    from tvm_bsp.runtime.files import atomic_output

    with atomic_output(dest) as tmp:
        shutil.copyfile(src, tmp)
    return dest.absolute()


def _runner_args(so: Path, feats: Path, utterance: bool) -> list[str]:
    return [str(so), "--features", str(feats), *(["--utterance"] if utterance else [])]


# The runner process runs as on a device: torch blocked (tvm_ffi imports it when installed,
# which costs seconds; the runner never needs it), TVM's runtime library only.
_RUNNER_BOOTSTRAP = (
    "import runpy, sys; sys.modules['torch'] = None; "
    f"runpy.run_module('{RUNNER_MODULE}', run_name='__main__', alter_sys=True)"
)


def _run_here(so: Path, feats: Path, utterance: bool) -> int:
    env = dict(os.environ, TVM_USE_RUNTIME_LIB="1")
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-c", _RUNNER_BOOTSTRAP, *_runner_args(so, feats, utterance)]
    sys.stdout.flush()
    return subprocess.run(cmd, env=env, check=False).returncode


_GUEST_RUNNER = f"""
import runpy, sys
sys.argv = ["{RUNNER_MODULE}", *sys.argv[1:]]
runpy.run_module("{RUNNER_MODULE}", run_name="__main__")
"""


def _run_qemu(so: Path, feats: Path, utterance: bool) -> int:
    from tvm_bsp.devices.aarch64 import run_in_arm64

    files: dict[str, Any] = {"model.so": so, "feats.npy": feats, **runtime_files()}
    sidecar = so.with_name(so.name + ".json")
    if sidecar.is_file():
        files["model.so.json"] = sidecar
    args = _runner_args(Path("model.so"), Path("feats.npy"), utterance)
    res = run_in_arm64(_GUEST_RUNNER, files, args, timeout=900)
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    return res.returncode


def device_command(so: Path, feats: Path, utterance: bool, opencl: bool = False) -> str:
    """The commands that run the runner on a device (files copied next to each other)."""
    names = [so.name, so.name + ".json", feats.name]
    device = ["--device", "opencl"] if opencl else []
    runner = shlex.join(
        ["python3", "-m", RUNNER_MODULE, *_runner_args(Path(so.name), Path(feats.name),
                                                                  utterance), *device]
    )  # fmt: skip
    return (
        f"copy {' '.join(names)} and the tvm_bsp files {', '.join(sorted(runtime_files()))} "
        "to the device (it needs python3, numpy and the TVM runtime: pip install "
        f"apache-tvm), then run there:\n  TVM_USE_RUNTIME_LIB=1 PYTHONPATH=. {runner}"
    )


def run_deploy(args: argparse.Namespace) -> int:
    """Handler of ``tvm-bsp deploy``."""
    from tvm_bsp.deploy.targets import get_deploy_target

    try:
        deploy = get_deploy_target(args.target)
        out: Path = args.out
        so = out / "model.so"
        # the inputs first: a bad WAV or feature file fails before minutes of compiling
        feats = args.features
        if feats is not None and not feats.is_file():
            raise FileNotFoundError(f"no feature file at {feats}")
        if args.wav is not None:
            feats = wav_features(args.wav, out)
            print(f"features of {args.wav}: {feats}")
        if args.model.suffix == ".so":
            if not args.model.is_file():
                raise FileNotFoundError(f"no compiled module at {args.model}")
            _copy_atomic(args.model, so)
            sidecar = args.model.with_name(args.model.name + ".json")
            if sidecar.is_file():
                _copy_atomic(sidecar, so.with_name(so.name + ".json"))
            print(f"copied {args.model} to {so}")
        else:
            so, _, cm = compile_to(args, so)
            print(f"wrote {so} ({len(cm.meta.get('sparse', []))} BSPC weights) and its sidecar")
    except (NotImplementedError, RuntimeError) as err:
        return fail("deploy", str(err))
    if feats is None:
        return 0
    if deploy.runs_here:
        return _run_here(so, feats, args.utterance)
    if deploy.emulated_here:
        print(f"running the {deploy.name} build under qemu-user (aarch64 emulator)", flush=True)
        _progress(f"running {so} under qemu-user (emulated aarch64: can take minutes) ...")
        t0 = time.monotonic()
        try:
            code = _run_qemu(so, feats, args.utterance)
            _progress(f"emulated run finished in {time.monotonic() - t0:.0f} s (exit {code})")
            return code
        except subprocess.TimeoutExpired as err:
            return fail("deploy", f"the emulated runner did not finish in {err.timeout:.0f} s")
        except RuntimeError as err:  # the emulator became unusable
            return fail("deploy", str(err))
    command = device_command(so, feats, args.utterance, deploy.name.startswith("opencl"))
    print(f"{deploy.name} does not run on this machine; {command}")
    return 0
