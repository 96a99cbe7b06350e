"""Bad input through the real CLI: exit 2, one `error: ...` line on stderr, no traceback, nothing written."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from _pg import pg_url  # noqa: F401 - the fixture
from _results_helpers import RUN_IDENTITY, both_modes
from _tiny import run_benchmark, synthetic_config
from benchmark.cli import main
from benchmark.config import protocol_for
from benchmark.data import get_dataset
from benchmark.data.splits import make_splits
from benchmark.results import ResultsStore

TUNE = ["tune", "--loss", "proxy_anchor", "--dataset", "synthetic", "--protocol", "quick", "--device", "cpu"]
RUN = ["run", "--loss", "proxy_anchor", "--dataset", "synthetic", "--protocol", "quick", "--device", "cpu"]

CASES = {
    "unknown loss": (["tune", "--loss", "nope", "--dataset", "synthetic", "--protocol", "quick"], "unknown loss 'nope'"),
    "unknown dataset": (["tune", "--loss", "proxy_anchor", "--dataset", "nope", "--protocol", "quick"],
                        "unknown dataset 'nope'"),
    "unknown trunk": ([*TUNE, "--set", "trunk=nope"], "unknown trunk 'nope'"),
    "unknown param": ([*RUN, "--param", "nope=1"], "nope"),
    "low above high": ([*TUNE, "--space", "margin=0.5:0.1"], "margin"),
    "outside domain": ([*RUN, "--param", "alpha=-1"], "alpha"),
    "bad storage url": ([*TUNE, "--storage", "nodb://x"], "nodb"),
    "trials 0": ([*TUNE, "--trials", "0"], "--trials must be at least 1"),
    "reproductions 0": (["test", "--loss", "proxy_anchor", "--dataset", "synthetic", "--protocol", "quick",
                         "--reproductions", "0"], "--reproductions"),
    "unknown device": ([*TUNE[:-2], "--device", "tpu"], "tpu"),
    "malformed set": ([*TUNE, "--set", "max_epochs"], "max_epochs"),
    "unknown setting": ([*TUNE, "--set", "nope=1"], "unknown protocol setting 'nope'"),
    "unknown protocol": (["tune", "--loss", "proxy_anchor", "--dataset", "synthetic", "--protocol", "nope"],
                         "--protocol"),
    "missing embeddings": (["evaluate", "--embeddings", "missing.npy", "--labels", "missing_labels.npy"],
                           "missing.npy"),
    "worker unknown loss": (["worker", "--losses", "proxy_anchor,nope", "--dataset", "synthetic",
                             "--protocol", "quick"], "unknown loss 'nope' in --losses"),
    "worker trials 0": (["worker", "--losses", "proxy_anchor", "--dataset", "synthetic", "--protocol", "quick",
                         "--trials", "0"], "--trials must be at least 1"),
    "db init half a study": (["db", "init", "--dataset", "synthetic"], "--dataset and --losses go together"),
    "db without action": (["db"], "required: ACTION"),
    # Every protocol setting is typed and checked against its domain before anything is read or written.
    **{f"set {setting}": ([*TUNE, "--set", setting], setting.split("=")[0]) for setting in (
        "m_per_class=0", "lr=nan", "lr=inf", "lr=0", "weight_decay=-1", "rrc_scale=1", "rrc_scale=0.9,0.1",
        "rrc_ratio=1,nan", "num_folds=5", "num_folds=0", "max_epochs=1e3", "batch_size=-32", "hflip=2",
        "momentum=1", "embedding_size=99999999999", "freeze_batchnorm=maybe", "iterations_per_epoch=1.5")},
    "seed -1": ([*TUNE, "--seed", "-1"], "--seed must be an integer from 0"),
    "workers huge": ([*TUNE, "--workers", "99999999999999999999"], "--workers must be from 0 to"),
    "seed too large": ([*TUNE, "--seed", str(2**32)], "--seed"),
    "fastap num_bins overflow": ([*RUN[:2], "fastap", *RUN[3:], "--param", "num_bins=1e23"], "num_bins"),
    "fastap num_bins too many": ([*RUN[:2], "fastap", *RUN[3:], "--param", "num_bins=50000"], "num_bins"),
    "bad port": ([*TUNE, "--storage", "postgresql://u:pw@127.0.0.1:port/db"], "not a database URL"),
    "db init unknown batch sampler": (["db", "init", "--dataset", "synthetic", "--losses", "proxy_anchor",
                                       "--batch-sampler", "nope"], "unknown batch sampler 'nope'"),
}


def check_one_error(result_code: int, stderr: str, expected: str) -> None:
    assert result_code == 2, stderr
    assert "Traceback" not in stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1, stderr
    assert expected in stderr, stderr


def files_under(path: Path) -> set[Path]:
    return {p.relative_to(path) for p in path.rglob("*")}


@pytest.mark.parametrize("argv,expected", CASES.values(), ids=CASES.keys())
def test_bad_input_in_process(argv, expected, tiny_env, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(argv)
    captured = capsys.readouterr()
    check_one_error(code, captured.err, expected)
    assert files_under(tmp_path) == set()  # no results database, no report, nothing


def test_malformed_search_space_yaml(tiny_env, tmp_path, monkeypatch, capsys):
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    (spaces / "proxy_anchor.yaml").write_text("params: [unclosed\n")
    monkeypatch.setenv("BENCHMARK_SEARCH_SPACES", str(spaces))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code = main(TUNE)
    check_one_error(code, capsys.readouterr().err, "proxy_anchor.yaml")
    assert files_under(work) == set()


@pytest.mark.parametrize("content,expected", [
    (b"source: x\nparams: {a: {type: float, low: 0, high: 1, default: 0.5}}\n# caf\xe9\n", "not UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "proxy_anchor.yaml"),
    (b"source: x\nparams:\n  c: {type: categorical, choices: [[1, 2], [3]], default: [1, 2]}\n", "choice [1, 2]"),
    (b"source: x\nparams:\n  c: {type: categorical, choices: [{a: 1}], default: {a: 1}}\n", "choice {'a': 1}"),
    (b"source: x\nparams:\n  n: {type: int, low: 1, high: 2, default: 1e400}\n", "finite"),
    (b"source: x\nparams:\n  n: {type: int, low: 1, high: 99999999999999, default: 1}\n", "at most"),
    (b"source: x\nparams:\n  1: {type: int, low: 1, high: 2, default: 1}\n", "key 1 is not a name"),
], ids=["non-utf8", "deep nesting", "list choices", "map choices", "overflow", "huge int", "numeric name"])
def test_hostile_search_space_yaml(content, expected, tiny_env, tmp_path, monkeypatch, capsys):
    spaces = tmp_path / "spaces"
    spaces.mkdir()
    (spaces / "proxy_anchor.yaml").write_bytes(content)
    monkeypatch.setenv("BENCHMARK_SEARCH_SPACES", str(spaces))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code = main(TUNE)
    check_one_error(code, capsys.readouterr().err, expected)
    assert files_under(work) == set() and (spaces / "proxy_anchor.yaml").read_bytes() == content


def test_corrupt_image_is_reported_by_verify(tiny_env, tiny_data_root, tmp_path, monkeypatch, capsys):
    root = tmp_path / "data"
    shutil.copytree(tiny_data_root, root)
    image = next(p for p in sorted((root / "synthetic").rglob("*")) if p.suffix in (".png", ".jpg"))
    image.write_bytes(b"not an image")
    monkeypatch.setenv("BENCHMARK_DATA_ROOT", str(root))
    code = main(["datasets", "verify", "synthetic"])
    err = capsys.readouterr().err
    check_one_error(code, err, image.name)
    assert image.read_bytes() == b"not an image"


def test_unwritable_report_path_via_subprocess(tiny_env, tmp_path):
    url = f"sqlite:///{tmp_path}/results.db"
    with ResultsStore(url) as store:  # one test reproduction, so that there is something to report
        run_id = store.start_run("test", "s", **RUN_IDENTITY, params={}, config={}, seed=0, split_hash="abc",
                                 provenance={}, reproduction=0)
        store.record_test_metrics(run_id, "s", **RUN_IDENTITY, reproduction=0, seed=0, metrics=both_modes(0.5))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    before = files_under(tmp_path)
    result = run_benchmark(["report", "--storage", url, "--out", str(blocker / "report.html")], tiny_env, tmp_path)
    check_one_error(result.returncode, result.stderr, "report.html")
    assert blocker.read_text() == "x" and files_under(tmp_path) == before


def test_output_piped_into_a_reader_that_left_ends_quietly(tiny_env, tmp_path):
    """`benchmark datasets list | head -1`: the reader is gone before we write (closed here before the command
    starts writing), so the write fails with a broken pipe: no traceback, the shell's status for it (141)."""
    import subprocess

    from _tiny import BENCHMARK

    process = subprocess.Popen([BENCHMARK, "datasets", "list"], env=tiny_env, cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141
    assert stderr == ""


def test_wrong_storage_url_via_subprocess(tiny_env, tmp_path):
    result = run_benchmark([*TUNE, "--storage", "postgresql://user:s3cret@127.0.0.1:1/none"], tiny_env, tmp_path)
    check_one_error(result.returncode, result.stderr, "127.0.0.1")
    assert "s3cret" not in result.stderr
    assert files_under(tmp_path) == set()


@pytest.mark.parametrize("content", ['[1, 2, 3]', '{"source": "storage"}', "not json"])
def test_baseline_of_the_wrong_shape(content, tiny_env, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    baseline = tmp_path / "baseline.json"
    baseline.write_text(content)
    code = main(["check", "--baseline", str(baseline), "--storage", f"sqlite:///{tmp_path}/none.db"])
    check_one_error(code, capsys.readouterr().err, "baseline.json")
    assert baseline.read_text() == content and files_under(tmp_path) == {Path("baseline.json")}


def test_db_init_names_studies_as_the_workers_will(tmp_path, monkeypatch, capsys):
    import optuna

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/b.db"
    assert main(["-q", "db", "init", "--storage", url, "--dataset", "synthetic", "--losses", "proxy_anchor,arcface",
                 "--protocol", "quick", "--batch-sampler", "representative"]) == 0
    names = {s.study_name for s in optuna.get_all_study_summaries(url)}
    assert names == {"synthetic-proxy_anchor-quick+representative", "synthetic-arcface-quick+representative"}


def test_other_protocol_settings_are_refused_by_tune_and_test(tiny_env, tmp_path, monkeypatch, capsys):
    import optuna

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/b.db"
    study = optuna.create_study(study_name="synthetic-proxy_anchor-quick", storage=url)
    stored = protocol_for("quick", max_epochs=3).to_dict()
    del stored["batch_sampler"]  # as written before the setting existed: read as its default
    study.set_user_attr("protocol", stored)
    study.set_user_attr("split_hash", make_splits(get_dataset("synthetic", tiny_env["BENCHMARK_DATA_ROOT"], synthetic_config())).hash)
    capsys.readouterr()
    for command in (TUNE + ["--trials", "1"], ["test", *TUNE[1:], "--reproductions", "1"]):
        code = main([*command, "--storage", url, "--set", "max_epochs=2"])
        check_one_error(code, capsys.readouterr().err, "other protocol settings (max_epochs 3 -> 2)")
    assert optuna.load_study(study_name="synthetic-proxy_anchor-quick", storage=url).get_trials() == []
    assert {p.name.split("-")[0] for p in files_under(tmp_path)} == {"b.db"}  # the database (and its WAL) only


def test_changed_split_hash_is_refused_before_training(tiny_env, tmp_path, monkeypatch, capsys):
    import optuna

    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{tmp_path}/b.db"
    assert main(["-q", "db", "init", "--storage", url, "--dataset", "synthetic", "--losses", "proxy_anchor",
                 "--protocol", "quick"]) == 0
    capsys.readouterr()
    optuna.load_study(study_name="synthetic-proxy_anchor-quick", storage=url).set_user_attr("split_hash", "0" * 64)
    code = main([*TUNE, "--storage", url, "--trials", "1"])
    check_one_error(code, capsys.readouterr().err, "split hash changed")
    assert optuna.load_study(study_name="synthetic-proxy_anchor-quick", storage=url).get_trials() == []


def _foreign_sqlite(path: Path, wal: bool = False) -> None:
    import sqlite3

    connection = sqlite3.connect(path)
    if wal:
        connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    connection.execute("INSERT INTO notes (body) VALUES ('mine')")
    connection.commit()
    connection.close()


def _clashing_sqlite(path: Path) -> None:
    import sqlite3

    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE trials (id INTEGER PRIMARY KEY, body TEXT)")  # Optuna's name, not its columns
    connection.commit()
    connection.close()


STORAGE_FILES = {
    "text file": (lambda p: p.write_text("just some text\n"), "db.sqlite", "is not a SQLite database"),
    "foreign sqlite": (_foreign_sqlite, "db.sqlite", "another application's database (tables: notes)"),
    "foreign sqlite in WAL mode": (lambda p: _foreign_sqlite(p, wal=True), "db.sqlite", "another application's"),
    "clashing sqlite": (_clashing_sqlite, "db.sqlite", "table trials in"),
    "corrupt journal": (lambda p: p.write_text("{not json\n"), "j.log", "is corrupt: line 1"),
    "journal of wrong records": (lambda p: p.write_text('{"op_code": 0}\n'), "j.log", "corrupt"),
    "binary journal": (lambda p: p.write_bytes(b"\xff\xfe\x00garbage\n"), "j.log", "corrupt"),
}
STORAGE_COMMANDS = {
    "tune": [*TUNE, "--trials", "1"],
    "test": ["test", *TUNE[1:], "--reproductions", "1"],
    "status": ["status"],
    "report": ["report", "--format", "md"],
    "db init": ["db", "init"],
}


@pytest.mark.parametrize("command", STORAGE_COMMANDS.values(), ids=STORAGE_COMMANDS.keys())
@pytest.mark.parametrize("make,name,expected", STORAGE_FILES.values(), ids=STORAGE_FILES.keys())
def test_storage_of_another_kind_is_left_byte_identical(make, name, expected, command, tiny_env, tmp_path,
                                                        monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / name
    make(path)
    url = f"journal:///{path}" if name.endswith(".log") else f"sqlite:///{path}"
    results = ["--results-db", f"sqlite:///{tmp_path}/results.db"] if name.endswith(".log") else []
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    code = main([*command, "--storage", url, *results])
    err = capsys.readouterr().err
    if command[0] in ("status", "report") and name.endswith(".log"):
        expected = "no database at"  # the journal's results database does not exist: refused first
    check_one_error(code, err, expected)
    assert "rerun" not in err
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before  # byte-identical, no -wal/-shm, no lock file


def test_read_only_commands_leave_no_wal_files_next_to_a_committed_database(tmp_path, monkeypatch, capsys):
    committed = Path(__file__).resolve().parent.parent / "results" / "scale-demo.db"
    copy = tmp_path / "committed" / "scale-demo.db"
    copy.parent.mkdir()
    shutil.copyfile(committed, copy)
    before = copy.read_bytes()
    monkeypatch.chdir(tmp_path)
    url = f"sqlite:///{copy}"
    assert main(["status", "--storage", url]) == 0
    assert main(["report", "--storage", url, "--format", "md"]) == 0
    assert "proxy_anchor" in capsys.readouterr().out
    assert main(["report", "--storage", url, "--out", str(tmp_path / "r.html")]) == 0
    assert [p.name for p in copy.parent.iterdir()] == ["scale-demo.db"] and copy.read_bytes() == before


def test_postgres_of_another_schema_or_without_privileges(pg_url, tiny_env, tmp_path, monkeypatch, capsys):  # noqa: F811
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    monkeypatch.chdir(tmp_path)
    admin = create_engine(make_url(pg_url).set(drivername="postgresql+psycopg2"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text("CREATE TABLE studies (id INTEGER, note TEXT)"))  # Optuna's name, another schema
    code = main([*TUNE, "--trials", "1", "--storage", pg_url])
    check_one_error(code, capsys.readouterr().err, "table studies in")
    with admin.connect() as conn:
        assert conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all() == [
            "studies"]  # nothing created next to it
        conn.execute(text("DROP TABLE studies"))
    assert main(["-q", "db", "init", "--storage", pg_url]) == 0
    role = "bm_test_reader_" + make_url(pg_url).database[-6:]
    with admin.connect() as conn:
        conn.execute(text(f"DROP ROLE IF EXISTS {role}"))
        conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))  # may see the tables, not read or write them
    capsys.readouterr()
    try:
        for command in ([*TUNE, "--trials", "1"], ["status"], ["report", "--format", "md"]):
            code = main([*command, "--storage", make_url(pg_url).set(username=role).render_as_string(False)])
            err = capsys.readouterr().err
            check_one_error(code, err, "permission denied")
            assert "rerun" not in err
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"REVOKE ALL ON SCHEMA public FROM {role}"))
            conn.execute(text(f"DROP OWNED BY {role}"))
            conn.execute(text(f"DROP ROLE {role}"))
        admin.dispose()


def test_truncated_jpeg_read_by_dataloader_workers_is_one_line(tiny_env, tiny_data_root, tmp_path, monkeypatch,
                                                               capsys):
    import io

    from PIL import Image

    root = tmp_path / "data"
    shutil.copytree(tiny_data_root, root, ignore=shutil.ignore_patterns(".cache"))
    image = sorted((root / "synthetic").rglob("*.png"))[0]
    buffer = io.BytesIO()
    Image.open(image).convert("RGB").save(buffer, format="JPEG")
    image.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])  # a JPEG cut short
    monkeypatch.setenv("BENCHMARK_DATA_ROOT", str(root))
    monkeypatch.chdir(tmp_path)
    code = main([*RUN, "--set", "iterations_per_epoch=2", "--set", "max_epochs=1", "--set", "patience=1",
                 "--workers", "2", "-q"])
    check_one_error(code, capsys.readouterr().err, f"cannot decode image {image}")


def test_weights_file_that_is_no_state_dict(tiny_env, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    weights = tmp_path / "weights.pt"
    weights.write_text("just text, not a checkpoint\n")
    code = main([*TUNE, "--weights", str(weights)])
    check_one_error(code, capsys.readouterr().err, "cannot read weights file")
    assert files_under(tmp_path) == {Path("weights.pt")}  # refused before any study or database
