"""Phone sets and foldings."""

from __future__ import annotations

import pytest

from tvm_bsp.speech.phones import (
    ESPEAK_ACCENT_OVERRIDES,
    ESPEAK_TO_39,
    FOLD_61_TO_39,
    PHONE_TO_ID,
    PHONES_39,
    TIMIT_61,
    cmu_to_39,
    espeak_to_39,
    fold_timit,
    phone_ids,
)


def test_timit_sets() -> None:
    assert len(TIMIT_61) == len(set(TIMIT_61)) == 61
    assert len(PHONES_39) == len(set(PHONES_39)) == 39
    assert set(FOLD_61_TO_39) == set(TIMIT_61)
    folded = {v for v in FOLD_61_TO_39.values() if v is not None}
    assert folded == set(PHONES_39)  # the folding is onto the 39 classes
    assert [k for k, v in FOLD_61_TO_39.items() if v is None] == ["q"]
    assert {p: i for i, p in enumerate(PHONES_39)} == PHONE_TO_ID


@pytest.mark.parametrize(
    ("timit", "folded"),
    [
        ("ao", "aa"), ("ax", "ah"), ("ax-h", "ah"), ("axr", "er"), ("hv", "hh"), ("ix", "ih"),
        ("el", "l"), ("em", "m"), ("en", "n"), ("nx", "n"), ("eng", "ng"), ("zh", "sh"),
        ("ux", "uw"), ("pcl", "sil"), ("h#", "sil"), ("pau", "sil"), ("epi", "sil"),
        ("dx", "dx"), ("iy", "iy"), ("q", None), ("IX", "ih"),
    ],
)  # fmt: skip
def test_lee_hon_folding(timit: str, folded: str | None) -> None:
    assert fold_timit(timit) == folded


def test_sil_collects_closures_and_pauses() -> None:
    sil = sorted(k for k, v in FOLD_61_TO_39.items() if v == "sil")
    assert sil == sorted(["pcl", "tcl", "kcl", "bcl", "dcl", "gcl", "h#", "pau", "epi"])


def test_espeak_tables_map_into_39() -> None:
    tables = [ESPEAK_TO_39, *ESPEAK_ACCENT_OVERRIDES.values()]
    for table in tables:
        for mnemonic, phones in table.items():
            assert len(phones) <= 2, mnemonic
            assert set(phones) <= set(PHONES_39), mnemonic


@pytest.mark.parametrize(
    ("mnemonic", "accent", "phones"),
    [
        ("D", "en-us", ("dh",)), ("T", "en", ("th",)), ("Z", "en", ("sh",)), ("j", "en", ("y",)),
        ("t#", "en-us", ("dx",)), ("?", "en-us", ()), (";", "en", ()), ("_:", "en", ("sil",)),
        ("3", "en-us", ("er",)), ("3", "en-gb-x-rp", ("ah",)), ("3:", "en", ("er",)),
        ("A@", "en-us+m3", ("aa", "r")), ("A@", "en", ("aa",)), ("aa", "en-gb-x-rp", ("aa",)),
        ("aa", "en-us", ("ae",)), ("V", "en-gb-x-gbclan", ("uh",)), ("@L", "en", ("ah", "l")),
        ("0", "en-us", ("aa",)), ("oU", "en", ("ow",)), ("aI@", "en", ("ay", "ah")),
        ("O~", "en-029", ("aa",)),  # modifier stripped: O~ -> O
        ("r-", "en", ("r",)), ("w#", "en-gb-scotland", ("w",)), ("n-", "en-us", ("n",)),
    ],
)  # fmt: skip
def test_espeak_examples(mnemonic: str, accent: str, phones: tuple[str, ...]) -> None:
    assert espeak_to_39(mnemonic, accent) == phones


def test_espeak_unknown_raises() -> None:
    with pytest.raises(KeyError):
        espeak_to_39("Q!", "en")


def test_cmu_folding() -> None:
    assert [cmu_to_39(p) for p in ["HH", "AH0", "L", "OW1"]] == ["hh", "ah", "l", "ow"]
    assert [cmu_to_39(p) for p in ["AO1", "ZH", "pau", "ax", "axr", "ER0"]] == [
        "aa", "sh", "sil", "ah", "er", "er",
    ]  # fmt: skip
    assert phone_ids(["aa", "z"]) == [0, 38]
    with pytest.raises(KeyError):
        cmu_to_39("XX")
