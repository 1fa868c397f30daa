"""scripts/table1.py: argument handling and the Markdown / plot rendering of the results."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tvm_bsp.experiments.table1.report import markdown_table, plot

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "table1.py"


@pytest.fixture(scope="module")
def table1():
    spec = importlib.util.spec_from_file_location("table1_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _doc() -> dict:
    dense = {"test": 30.0, "dev": 28.0}
    records = []
    for method, rate, achieved, kept, pers in [
        ("bsp", 10, 10.01, 62000, {"test": 30.0, "dev": 28.5}),
        ("bsp", 19, 19.2, 32300, {"test": 31.5, "dev": 29.0}),
        ("magnitude", 10, 10.0, 62050, {"test": 29.5, "dev": 28.0}),
    ]:
        for split, per in pers.items():
            records.append(
                {
                    "rate": rate,
                    "method": method,
                    "per": per,
                    "per_dense": dense[split],
                    "achieved_rate": achieved,
                    "split": split,
                    "kept": kept,
                    "total": 620544,
                    "col_rate": 10.0 if rate == 10 else 16.0,
                    "row_rate": 1.0 if rate == 10 else 1.25,
                    "effective_row_rate": achieved / (10.0 if rate == 10 else 16.0),
                }
            )
    return {
        "records": records,
        "dense": {"per": dense, "params": 620544},
        "config": {"model": {"cell": "gru", "hidden": 256, "layers": 2, "head": "framewise"}},
    }


def test_markdown_has_rtmobile_columns_and_losses():
    text = markdown_table(_doc())
    lines = text.splitlines()
    header = next(x for x in lines if x.startswith("| overall compression"))
    cells = [c.strip() for c in header.strip("|").split("|")]
    assert cells[:6] == [
        "overall compression",
        "column rate",
        "row rate",
        "kept params",
        "PER",
        "PER loss",
    ]
    assert "| 1 | 1 | 1 | 620.5K | 30.00 | 0 | 0 |" in lines
    row19 = next(x for x in lines if x.startswith("| 19 (achieved 19.2)"))
    assert "| 16 | 1.20 | 32.3K | 31.50 | 1.50 | 0.60 |" in row19
    assert any(x.startswith("| magnitude | 10.0 | 62.0K | 29.50 | -0.50 |") for x in lines)
    assert any(x.startswith("| bsp | 19 | 31.50 | 1.50 | 29.00 | 1.00 |") for x in lines)


def test_plot_writes_png(tmp_path):
    plot(_doc(), tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_arguments(table1):
    parser = table1.build_parser()
    config = table1.config_from_args(
        parser.parse_args(["--rates", "10,29,2.5", "--grid", "12x8", "--methods", "bsp"])
    )
    assert config.rates == (10, 29, 2.5)
    assert (config.prune.row_blocks, config.prune.col_blocks) == (12, 8)
    assert config.methods == ("bsp",)
    quick = table1.config_from_args(parser.parse_args(["--quick"]))
    assert quick.model.hidden < config.model.hidden and len(quick.rates) == 2
    for bad in (["--methods", "pca"], ["--splits", "train"], ["--rates", "0.5"]):
        with pytest.raises(ValueError):
            table1.config_from_args(parser.parse_args(bad))


def test_main_exit_codes(table1, capsys):
    assert table1.main(["--methods", "pca", "--work", "/nonexistent/x"]) == 2
    assert "unknown method" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        table1.main(["--grid", "12"])
    assert exc.value.code == 2


def test_contract_records_and_list_documents():
    from tvm_bsp.experiments.table1.report import CONTRACT_KEYS, as_document, contract_records

    doc = _doc()
    records = contract_records(doc["records"])
    assert len(records) == len(doc["records"])
    assert all(tuple(r) == CONTRACT_KEYS for r in records)
    assert [r["per"] for r in records] == [r["per"] for r in doc["records"]]
    full = as_document(records)
    assert full["dense"]["per"] == {"test": 30.0, "dev": 28.0}
    text = markdown_table(records)  # details missing: shown as "-"
    assert "| 19 (achieved 19.2) | - | - | - | 31.50 | 1.50 | 0.60 |" in text.splitlines()
    with pytest.raises(ValueError, match="lacks split"):
        contract_records([{k: 1 for k in CONTRACT_KEYS if k != "split"}])
    with pytest.raises(ValueError, match="records"):
        as_document({"dense": {}})


def test_main_writes_the_contract_list_and_the_details(table1, tmp_path, monkeypatch, capsys):
    import json

    from tvm_bsp.experiments.table1.run import RunSummary

    doc = _doc()

    def fake_run(work, config, **kw):
        return RunSummary(records=doc["records"], dense=doc["dense"], wall_s=1.0)

    monkeypatch.setattr(table1, "run_experiment", fake_run)
    out = tmp_path / "res" / "t1.json"
    md = tmp_path / "res" / "t1.md"
    argv = ["--work", str(tmp_path / "w"), "--json", str(out), "--markdown", str(md)]
    assert table1.main(argv) == 0
    capsys.readouterr()
    records = json.loads(out.read_text())
    assert isinstance(records, list) and len(records) == len(doc["records"])
    for rec, full in zip(records, doc["records"], strict=True):
        assert set(rec) == {"rate", "method", "per", "per_dense", "achieved_rate", "split"}
        assert rec["split"] in ("test", "dev", "real")
        assert rec["method"] in ("bsp", "magnitude", "balanced")
        assert {k: full[k] for k in rec} == rec
    details = json.loads(table1.details_path(out).read_text())
    assert details["records"] == doc["records"] and "config" in details
    assert table1.details_path(out).name == "t1.details.json"
    assert "| 19 (achieved 19.2) | 16 |" in md.read_text()


def test_gradual_and_distill_arguments(table1):
    parser = table1.build_parser()
    config = table1.config_from_args(parser.parse_args(["--no-gradual", "--distill", "0.3"]))
    assert config.gradual is False and config.prune.distill_weight == 0.3
    assert table1.config_from_args(parser.parse_args(["--gradual"])).gradual is True
    with pytest.raises(ValueError, match="distill"):
        table1.config_from_args(parser.parse_args(["--distill", "1.5"]))
