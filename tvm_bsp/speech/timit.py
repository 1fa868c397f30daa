"""Reader for the TIMIT corpus (LDC93S1) in its standard layout, for owners of a copy.

Layout: ``TIMIT/{TRAIN,TEST}/DR1..DR8/<SPEAKER>/<UTT>.{WAV,PHN}`` in upper or lower case
(the folder holding ``TRAIN`` and ``TEST`` may be given directly or be one or two levels
below the given root). ``.WAV`` files are NIST SPHERE: a text header (``NIST_1A``, the header
size in bytes, then ``name -type value`` lines up to ``end_head``) followed by 16-bit PCM in
the byte order of ``sample_byte_format`` (``01`` little-endian, ``10`` big-endian); copies
converted to RIFF WAV are read too. ``.PHN`` files list ``start end label`` in samples with
the 61 TIMIT labels.

Splits (the usual recipe, e.g. Kaldi's ``egs/timit``; the SA dialect sentences, read by
every speaker, are always excluded):

``"train"``
    all 462 ``TRAIN`` speakers, 3,696 utterances;
``"dev"``
    the 50 ``TEST`` speakers of :data:`DEV_SPEAKERS`, 400 utterances;
``"test"``
    the core test set, the 24 ``TEST`` speakers of :data:`CORE_TEST_SPEAKERS` (2 men and
    1 woman per dialect region), 192 utterances;
``"full_test"``
    all 168 ``TEST`` speakers, 1,344 utterances.

Phones are folded 61 -> 39 (:data:`tvm_bsp.speech.phones.FOLD_61_TO_39`); the glottal
stop ``q`` is deleted and its samples given to the phone before it; closures, pauses and
``h#`` become ``sil``, and neighbouring ``sil`` segments merge (``pcl`` after ``pau`` is
one silence).
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tvm_bsp.speech.align import Alignment, fold_engine_phones
from tvm_bsp.speech.features import compute_features, num_frames
from tvm_bsp.speech.utterance import Utterance

CORE_TEST_SPEAKERS: tuple[str, ...] = (
    "MDAB0", "MWBT0", "FELC0",  # DR1
    "MTAS1", "MWEW0", "FPAS0",  # DR2
    "MJMP0", "MLNT0", "FPKT0",  # DR3
    "MLLL0", "MTLS0", "FJLM0",  # DR4
    "MBPM0", "MKLT0", "FNLP0",  # DR5
    "MCMJ0", "MJDH0", "FMGD0",  # DR6
    "MGRT0", "MNJM0", "FDHC0",  # DR7
    "MJLN0", "MPAM0", "FMLD0",  # DR8
)  # fmt: skip
"""The 24 speakers of TIMIT's core test set."""

DEV_SPEAKERS: tuple[str, ...] = (
    "FAKS0", "FDAC1", "FJEM0", "MGWT0", "MJAR0", "MMDB1", "MMDM2", "MPDF0", "FCMH0", "FKMS0",
    "MBDG0", "MBWM0", "MCSH0", "FADG0", "FDMS0", "FEDW0", "MGJF0", "MGLB0", "MRTK0", "MTAA0",
    "MTDT0", "MTHC0", "MWJG0", "FNMR0", "FREW0", "FSEM0", "MBNS0", "MMJR0", "MDLS0", "MDLF0",
    "MDVC0", "MERS0", "FMAH0", "FDRW0", "MRCS0", "MRJM4", "FCAL1", "MMWH0", "FJSJ0", "MAJC0",
    "MJSW0", "MREB0", "FGJD0", "FJMG0", "MROA0", "MTEB0", "MJFC0", "MRJR0", "FMML0", "MRWS1",
)  # fmt: skip
"""The 50 ``TEST`` speakers of the usual development set (disjoint from the core test)."""

TIMIT_SPLITS: tuple[str, ...] = ("train", "dev", "test", "full_test")
"""Splits understood by :func:`timit_files` and :func:`load_timit`."""


@dataclass(frozen=True)
class TimitFile:
    """One TIMIT utterance on disk.

    Attributes
    ----------
    speaker : str
        Upper-case speaker id (``"FCJF0"``).
    name : str
        Upper-case sentence id (``"SI1027"``).
    region : str
        Dialect region folder (``"DR1"``).
    wav, phn : pathlib.Path
        The audio and phone files.
    """

    speaker: str
    name: str
    region: str
    wav: Path
    phn: Path

    @property
    def id(self) -> str:
        """``"fcjf0_si1027"``."""
        return f"{self.speaker}_{self.name}".lower()


def read_sphere(path: str | Path) -> tuple[np.ndarray, dict[str, object]]:
    """Read a NIST SPHERE (or RIFF WAV) file of 16-bit PCM.

    Parameters
    ----------
    path : path
        The file.

    Returns
    -------
    (numpy.ndarray, dict)
        int16 samples (first channel) and the header fields (``-i`` as int, ``-r`` as float,
        ``-sN`` as str).

    Raises
    ------
    ValueError
        If the header is malformed or the samples are not uncompressed 16-bit PCM.
    """
    data = Path(path).read_bytes()
    if data[:4] == b"RIFF":
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{path}: expected 16-bit PCM")
            samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
            header = {"sample_rate": w.getframerate(), "channel_count": w.getnchannels()}
        return samples.reshape(-1, w.getnchannels())[:, 0].copy(), header
    if not data.startswith(b"NIST_1A"):
        raise ValueError(f"{path}: not a NIST SPHERE file")
    lines = data[:1024].split(b"\n")
    try:
        size = int(lines[1])
    except (IndexError, ValueError) as err:
        raise ValueError(f"{path}: bad SPHERE header size") from err
    header: dict[str, object] = {}
    for raw in data[:size].split(b"\n")[2:]:
        line = raw.decode("ascii", "replace").strip()
        if line == "end_head":
            break
        parts = line.split(None, 2)
        if len(parts) < 3 or not parts[1].startswith("-"):
            continue
        key, kind, value = parts
        if kind == "-i":
            header[key] = int(value)
        elif kind == "-r":
            header[key] = float(value)
        else:
            length = int(kind[2:]) if kind[2:].isdigit() else len(value)
            header[key] = value[:length]
    width = int(header.get("sample_n_bytes", 2))
    coding = str(header.get("sample_coding", "pcm")).lower()
    if width != 2 or not coding.startswith("pcm") or "," in coding:
        raise ValueError(
            f"{path}: only uncompressed 16-bit PCM is supported ({coding}, {width} bytes)"
        )
    order = str(header.get("sample_byte_format", "01"))
    dtype = ">i2" if order == "10" else "<i2"
    channels = int(header.get("channel_count", 1))
    count = int(header.get("sample_count", (len(data) - size) // (2 * channels)))
    samples = np.frombuffer(data, dtype=dtype, count=count * channels, offset=size)
    return samples.reshape(-1, channels)[:, 0].astype(np.int16), header


def read_phn(path: str | Path) -> list[tuple[str, int, int]]:
    """Read a ``.PHN`` file as ``(label, start, end)`` triples (lower-case labels)."""
    out = []
    for line in Path(path).read_text(encoding="ascii", errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3:
            out.append((parts[2].lower(), int(parts[0]), int(parts[1])))
    return out


def _child(folder: Path, name: str) -> Path | None:
    """Case-insensitive lookup of a sub-folder."""
    for child in folder.iterdir():
        if child.is_dir() and child.name.lower() == name:
            return child
    return None


def find_timit_root(root: str | Path) -> Path:
    """Return the folder holding ``TRAIN`` and ``TEST`` at or up to two levels below ``root``.

    Raises
    ------
    FileNotFoundError
        If no such folder exists.
    """
    if not Path(root).is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    level = [Path(root)]
    for _ in range(3):  # root, its children, its grandchildren
        for folder in level:
            if _child(folder, "train") and _child(folder, "test"):
                return folder
        level = [c for f in level for c in sorted(f.iterdir()) if c.is_dir()]
    raise FileNotFoundError(f"no TIMIT TRAIN/TEST folders under {root}")


def timit_files(root: str | Path, split: str = "test") -> list[TimitFile]:
    """List the utterances of a split (SA sentences excluded), sorted by speaker and name.

    Parameters
    ----------
    root : path
        TIMIT folder (see :func:`find_timit_root`).
    split : {"train", "dev", "test", "full_test"}
        Which split (see the module docstring).

    Returns
    -------
    list of TimitFile
        Utterances that have both a ``.WAV`` and a ``.PHN`` file.
    """
    if split not in TIMIT_SPLITS:
        raise ValueError(f"unknown TIMIT split {split!r}; expected one of {TIMIT_SPLITS}")
    base = find_timit_root(root)
    folder = _child(base, "train" if split == "train" else "test")
    assert folder is not None
    keep = {"dev": set(DEV_SPEAKERS), "test": set(CORE_TEST_SPEAKERS)}.get(split)
    files = []
    for region in sorted(
        p for p in folder.iterdir() if p.is_dir() and p.name.lower().startswith("dr")
    ):
        for speaker in sorted(p for p in region.iterdir() if p.is_dir()):
            spk = speaker.name.upper()
            if keep is not None and spk not in keep:
                continue
            by_stem: dict[str, dict[str, Path]] = {}
            for f in speaker.iterdir():
                suffix = f.suffix.lower()
                if suffix in (".wav", ".phn") and not f.name.lower().endswith(".wav.wav"):
                    by_stem.setdefault(f.stem.upper(), {})[suffix] = f
            for stem, pair in sorted(by_stem.items()):
                if stem.startswith("SA") or len(pair) != 2:
                    continue
                files.append(TimitFile(spk, stem, region.name.upper(), pair[".wav"], pair[".phn"]))
    return files


def timit_alignment(phn: list[tuple[str, int, int]], num_samples: int) -> Alignment:
    """Fold a ``.PHN`` transcription to a contiguous 39-class :class:`Alignment`."""
    ordered = sorted(phn, key=lambda x: x[1])
    contiguous = []
    for i, (label, start, end) in enumerate(ordered):
        nxt = ordered[i + 1][1] if i + 1 < len(ordered) else max(end, num_samples)
        contiguous.append((label, start, nxt))
    return fold_engine_phones(contiguous, num_samples, "cmu")


def load_timit(root: str | Path, split: str = "test", feature: str = "mfcc") -> list[Utterance]:
    """Load a TIMIT split as utterances with features and framewise 39-class labels.

    Parameters
    ----------
    root : path
        TIMIT folder.
    split : {"train", "dev", "test", "full_test"}
        Which split; ``"test"`` is the 24-speaker core test set.
    feature : {"mfcc", "fbank"}
        Feature kind (as :func:`tvm_bsp.speech.corpus.load_split`).

    Returns
    -------
    list of Utterance
        One per sentence, ``speaker`` the TIMIT speaker id, ``text`` empty.
    """
    out = []
    for f in timit_files(root, split):
        samples, header = read_sphere(f.wav)
        rate = int(header.get("sample_rate", 16000))
        align = timit_alignment(read_phn(f.phn), len(samples))
        frames = num_frames(len(samples), round(0.025 * rate), round(0.010 * rate))
        out.append(
            Utterance(
                id=f.id,
                features=compute_features(samples.astype(np.float32), feature, rate),
                labels=align.frame_labels(frames, round(0.025 * rate), round(0.010 * rate)),
                phones=list(align.phones),
                speaker=f.speaker,
            )
        )
    return out
