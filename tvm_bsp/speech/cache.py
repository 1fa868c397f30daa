"""Per-split feature caches: all utterances' features and frame labels in one ``.npz``.

``features/{split}.{kind}.npz`` holds

``features``
    float32 ``(sum T, D)``, the utterances' frames one after the other;
``labels``
    int8 ``(sum T,)`` framewise 39-class ids (the phone at each frame's centre);
``offsets``
    int64 ``(N + 1,)``: utterance ``i`` owns rows ``offsets[i]:offsets[i + 1]``;
``ids``
    the utterance ids (unicode array);
``key``
    the digest of the manifest and feature settings it was computed from; a cache whose key
    differs is stale and rebuilt.

No pickled objects are stored.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from tvm_bsp.speech.align import Alignment
from tvm_bsp.speech.features import FEATURE_DIMS, compute_features, num_frames
from tvm_bsp.speech.storage import atomic_file, dumps, load_audio

FEATURE_VERSION = 1
"""Bumped when the feature computation changes (invalidates caches)."""


def cache_key(records: Sequence[dict], kind: str) -> str:
    """Digest of what a cache depends on: the records' audio, alignment and the feature kind."""
    digest = hashlib.sha256(f"{kind}:{FEATURE_VERSION}".encode())
    for r in records:
        digest.update(dumps([r["id"], r["audio"], r["num_samples"], r["segments"]]).encode())
    return digest.hexdigest()


def cache_path(root: str | Path, split: str, kind: str) -> Path:
    """Location of a split's cache."""
    return Path(root) / "features" / f"{split}.{kind}.npz"


def build_cache(
    root: str | Path,
    split: str,
    records: Sequence[dict],
    kind: str = "mfcc",
    progress: bool = False,
) -> Path:
    """Compute features and frame labels of every record and store them in one file.

    Parameters
    ----------
    root : path
        Corpus folder (record ``audio`` paths are relative to it).
    split : str
        Split name (names the file).
    records : sequence of dict
        Manifest records in order.
    kind : str
        Feature kind (:data:`tvm_bsp.speech.features.FEATURE_DIMS`).
    progress : bool
        Show a progress bar.

    Returns
    -------
    pathlib.Path
        The cache file.

    Raises
    ------
    ValueError
        If an utterance's labels do not match its number of feature frames.
    """
    root = Path(root)
    feats, labels, offsets = [], [], [0]
    for r in tqdm(records, desc=f"features {split}", disable=not progress, leave=False):
        samples, rate = load_audio(root / r["audio"])
        x = compute_features(samples.astype(np.float32), kind, rate)
        frames = num_frames(len(samples), round(0.025 * rate), round(0.010 * rate))
        if x.shape[0] != frames:
            raise ValueError(f"{r['id']}: {x.shape[0]} feature frames, expected {frames}")
        align = Alignment.from_segments(r["segments"])
        if align.num_samples != len(samples):
            raise ValueError(
                f"{r['id']}: alignment covers {align.num_samples} of {len(samples)} samples"
            )
        y = align.frame_labels(frames, round(0.025 * rate), round(0.010 * rate))
        feats.append(x)
        labels.append(y.astype(np.int8))
        offsets.append(offsets[-1] + frames)
    dim = FEATURE_DIMS[kind]
    features = np.concatenate(feats) if feats else np.zeros((0, dim), np.float32)
    del feats
    path = cache_path(root, split, kind)
    with atomic_file(path) as f:
        np.savez(
            f,
            features=features,
            labels=np.concatenate(labels) if labels else np.zeros(0, np.int8),
            offsets=np.asarray(offsets, dtype=np.int64),
            ids=np.asarray([r["id"] for r in records], dtype=str),
            key=np.asarray(cache_key(records, kind)),
        )
    return path


def load_cache(
    root: str | Path, split: str, records: Sequence[dict], kind: str = "mfcc"
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Return ``(features, labels, offsets)`` of a fresh cache, or ``None`` if missing or stale."""
    path = cache_path(root, split, kind)
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        if str(data["key"]) != cache_key(records, kind):
            return None
        return data["features"], data["labels"].astype(np.int64), data["offsets"]
