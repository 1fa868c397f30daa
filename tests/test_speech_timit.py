"""TIMIT reader on a tiny fake corpus tree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tvm_bsp.speech.features import num_frames
from tvm_bsp.speech.phones import PHONE_TO_ID
from tvm_bsp.speech.timit import (
    CORE_TEST_SPEAKERS,
    DEV_SPEAKERS,
    load_timit,
    read_phn,
    read_sphere,
    timit_files,
)

PHN = [
    (0, 2000, "h#"),
    (2000, 2600, "sh"),
    (2600, 4000, "ix"),
    (4000, 4300, "q"),  # deleted, its samples go to "ix"
    (4300, 5000, "tcl"),
    (5000, 5400, "t"),
    (5400, 6400, "ax-h"),
    (6400, 7000, "pau"),
    (7000, 8000, "h#"),
]


def _sphere(samples: np.ndarray, byte_format: str = "01") -> bytes:
    lines = [
        "NIST_1A",
        "   1024",
        "database_id -s5 TIMIT",
        "utterance_id -s8 fake_sx1",
        "channel_count -i 1",
        f"sample_count -i {len(samples)}",
        "sample_rate -i 16000",
        "sample_min -i -32768",
        "sample_max -i 32767",
        "sample_n_bytes -i 2",
        f"sample_byte_format -s2 {byte_format}",
        "sample_sig_bits -i 16",
        "end_head",
    ]
    header = ("\n".join(lines) + "\n").encode("ascii").ljust(1024, b" ")
    dtype = ">i2" if byte_format == "10" else "<i2"
    return header + samples.astype(dtype).tobytes()


def _write_utt(
    folder: Path, name: str, rng: np.random.Generator, upper: bool, big_endian: bool = False
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    samples = (rng.standard_normal(8000) * 1000).astype(np.int16)
    wav = folder / (f"{name}.WAV" if upper else f"{name.lower()}.wav")
    wav.write_bytes(_sphere(samples, "10" if big_endian else "01"))
    phn = folder / (f"{name}.PHN" if upper else f"{name.lower()}.phn")
    phn.write_text("".join(f"{a} {b} {p}\n" for a, b, p in PHN))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    base = tmp_path / "TIMIT"
    _write_utt(base / "TRAIN" / "DR1" / "FCJF0", "SI1027", rng, upper=True)
    _write_utt(base / "TRAIN" / "DR1" / "FCJF0", "SX127", rng, upper=True, big_endian=True)
    _write_utt(base / "TRAIN" / "DR1" / "FCJF0", "SA1", rng, upper=True)  # excluded
    _write_utt(base / "TEST" / "DR1" / "MDAB0", "SI1039", rng, upper=True)  # core test
    _write_utt(base / "TEST" / "DR1" / "MDAB0", "SA2", rng, upper=True)
    _write_utt(base / "TEST" / "DR1" / "FAKS0", "SX133", rng, upper=True)  # dev
    _write_utt(base / "TEST" / "DR2" / "MABC0", "SI9", rng, upper=True)  # neither
    return tmp_path


def test_speaker_lists() -> None:
    assert len(CORE_TEST_SPEAKERS) == len(set(CORE_TEST_SPEAKERS)) == 24
    assert len(DEV_SPEAKERS) == len(set(DEV_SPEAKERS)) == 50
    assert not set(CORE_TEST_SPEAKERS) & set(DEV_SPEAKERS)
    assert sum(s.startswith("F") for s in CORE_TEST_SPEAKERS) == 8


def test_sphere_and_phn(tree: Path) -> None:
    folder = tree / "TIMIT" / "TRAIN" / "DR1" / "FCJF0"
    little, header = read_sphere(folder / "SI1027.WAV")
    assert little.dtype == np.int16 and little.shape == (8000,)
    assert header["sample_rate"] == 16000 and header["database_id"] == "TIMIT"
    big, header = read_sphere(folder / "SX127.WAV")
    assert header["sample_byte_format"] == "10" and big.shape == (8000,)
    raw = (folder / "SX127.WAV").read_bytes()[1024:]
    np.testing.assert_array_equal(big, np.frombuffer(raw, dtype=">i2"))
    assert read_phn(folder / "SI1027.PHN")[:2] == [("h#", 0, 2000), ("sh", 2000, 2600)]
    with pytest.raises(ValueError):
        (tree / "bad.wav").write_bytes(b"not a sphere file")
        read_sphere(tree / "bad.wav")


def test_splits(tree: Path) -> None:
    names = {s: [f.id for f in timit_files(tree, s)] for s in ("train", "dev", "test", "full_test")}
    assert names == {
        "train": ["fcjf0_si1027", "fcjf0_sx127"],
        "dev": ["faks0_sx133"],
        "test": ["mdab0_si1039"],
        "full_test": ["faks0_sx133", "mdab0_si1039", "mabc0_si9"],
    }
    with pytest.raises(ValueError):
        timit_files(tree, "eval")
    with pytest.raises(FileNotFoundError):
        timit_files(tree / "TIMIT" / "TRAIN", "train")


def test_load_folds_to_39_with_frame_labels(tree: Path) -> None:
    (utt,) = load_timit(tree, "test")
    assert utt.id == "mdab0_si1039" and utt.speaker == "MDAB0"
    assert utt.phones == ["sil", "sh", "ih", "sil", "t", "ah", "sil"]
    frames = num_frames(8000)
    assert utt.features.shape == (frames, 39) and utt.labels.shape == (frames,)
    centres = np.arange(frames) * 160 + 200
    bounds = [
        (2000, "sil"),
        (2600, "sh"),
        (4300, "ih"),
        (5000, "sil"),
        (5400, "t"),
        (6400, "ah"),
        (8000, "sil"),
    ]
    expected = [PHONE_TO_ID[next(p for end, p in bounds if c < end)] for c in centres]
    assert utt.labels.tolist() == expected


def test_lower_case_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    _write_utt(tmp_path / "data" / "timit" / "train" / "dr3" / "mabc0", "SI1", rng, upper=False)
    (tmp_path / "data" / "timit" / "test").mkdir()
    (utt,) = load_timit(tmp_path, "train", feature="fbank")
    assert utt.id == "mabc0_si1" and utt.features.shape[1] == 40
