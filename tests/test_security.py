"""Secrets never leave the process: a password in a storage URL appears in no output, log line or stored row; CSV
cells cannot become spreadsheet formulas; study namespaces keep users of one database apart."""

from __future__ import annotations

import csv
import io
import logging

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from _pg import pg_url  # noqa: F401 - the fixture
from _tiny import TINY_PROTOCOL
from benchmark.cli import main
from benchmark.redaction import RedactingFilter
from benchmark.report.tables import to_csv

PASSWORD = "S3cretPw-9z"
FAST = [*TINY_PROTOCOL, "--set", "max_epochs=1", "--set", "save_interval=1", "--set", "patience=1",
        "--workers", "0"]


def test_no_password_in_any_output_log_or_row(pg_url, tiny_env, tmp_path, monkeypatch, capsys):  # noqa: F811
    # The local server trusts 127.0.0.1: the password is not checked, only carried everywhere a URL goes.
    url = make_url(pg_url).set(password=PASSWORD).update_query_dict({"sslpassword": PASSWORD})
    url = url.render_as_string(hide_password=False)
    experiment = ["--dataset", "synthetic", "--loss", "proxy_anchor", *FAST, "--storage", url]
    commands = [
        ["-v", "check", "--storage", url, "--baseline", str(tmp_path / "none.json"), "--update"],  # no results yet
        ["-v", "tune", *experiment, "--trials", "1"],
        ["-v", "test", *experiment, "--reproductions", "1"],
        ["-v", "status", "--storage", url],
        ["-v", "report", "--storage", url, "--out", str(tmp_path / "index.html")],
        ["-v", "check", "--storage", url, "--baseline", str(tmp_path / "baseline.json"), "--update"],
        *(["-v", "report", "--storage", url, "--format", f, "--out", str(tmp_path / f"board.{f}")]
          for f in ("md", "csv", "latex")),
        ["-v", "tune", *experiment, "--storage", make_url(url).set(port=1).render_as_string(False), "--trials", "1"],
    ]
    monkeypatch.chdir(tmp_path)
    outputs = []
    for command in commands:  # in-process: the same handlers and filters as the console script, less start-up
        main(command)
        captured = capsys.readouterr()
        outputs.append(captured.out + captured.err)
    assert "no test results in" in outputs[0] and "synthetic-proxy_anchor-quick " in outputs[3]
    assert "cannot open storage" in outputs[-1] or "cannot connect" in outputs[-1]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"index.html", "baseline.json", "board.md", "board.csv", "board.latex"}
    leaks = [o for o in outputs if PASSWORD in o] + [str(p) for p in files if PASSWORD.encode() in p.read_bytes()]
    assert not leaks
    # Every stored row of every table: Optuna's and the results tables.
    engine = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg2"))
    with engine.connect() as conn:
        tables = inspect(conn).get_table_names()
        assert "bm_runs" in tables and "trials" in tables
        dump = "".join(str(row) for table in tables for row in conn.execute(text(f'SELECT * FROM "{table}"')))
    engine.dispose()
    assert "proxy_anchor" in dump and PASSWORD not in dump


def test_log_records_and_tracebacks_are_redacted(caplog):
    logger = logging.getLogger("bm-test-redaction")
    record = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "connecting to %s", (
        f"postgresql://u:{PASSWORD}@h/d",), None)
    assert RedactingFilter().filter(record) and PASSWORD not in record.getMessage()
    try:
        raise RuntimeError(f"could not reach mysql://u:{PASSWORD}@h/d?password={PASSWORD}")
    except RuntimeError:
        import sys

        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    RedactingFilter().filter(record)
    assert PASSWORD not in logging.Formatter().format(record) and "RuntimeError" in record.exc_text


@pytest.mark.parametrize("hostile", ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\t=1"])
def test_csv_cells_cannot_be_formulas(hostile):
    import pandas as pd

    board = pd.DataFrame({"dataset": ["synthetic"], "loss": [hostile], "value": [-0.5]})
    rows = list(csv.reader(io.StringIO(to_csv(board))))
    assert rows[1][1] == "'" + hostile
    assert rows[1][2] == "-0.5"  # a number stays a number


def test_study_prefixes_keep_users_of_one_database_apart(tiny_env, tmp_path, monkeypatch, capsys):
    import json

    import optuna

    from benchmark.cli._common import experiment_from_args
    from benchmark.cli import build_parser
    from benchmark.tuning.study import Tuner

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/shared.db"
    for user in ("alice", "bob"):
        assert main(["-q", "db", "init", "--storage", url, "--dataset", "synthetic", "--losses", "proxy_anchor",
                     "--protocol", "quick", "--study-prefix", user]) == 0
    names = {s.study_name for s in optuna.get_all_study_summaries(url)}
    assert names == {"alice/synthetic-proxy_anchor-quick", "bob/synthetic-proxy_anchor-quick"}
    capsys.readouterr()
    assert main(["status", "--storage", url, "--json", "--study-prefix", "alice"]) == 0
    assert [row["study"] for row in json.loads(capsys.readouterr().out)] == ["alice/synthetic-proxy_anchor-quick"]
    monkeypatch.setenv("BENCHMARK_STUDY_PREFIX", "bob")  # the environment sets a default namespace
    assert main(["status", "--storage", url, "--json"]) == 0
    assert [row["study"] for row in json.loads(capsys.readouterr().out)] == ["bob/synthetic-proxy_anchor-quick"]
    # tune, test, sweep and worker name their studies through the same experiment.
    args = build_parser().parse_args(["tune", "--loss", "proxy_anchor", "--dataset", "synthetic", "--protocol",
                                      "quick", "--device", "cpu", "--storage", url, "--study-prefix", "carol"])
    tuner = Tuner(experiment_from_args(args), url, url, total_trials=1, sampler="tpe", pruner="none", seed=0)
    assert tuner.name == "carol/synthetic-proxy_anchor-quick"
    code = main(["status", "--storage", url, "--study-prefix", "../x"])
    assert code == 2 and capsys.readouterr().err.startswith("error: --study-prefix '../x'")
