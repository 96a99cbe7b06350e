"""optuna-dashboard serves our studies as they are (optional extra; installed by the dev extra, so CI runs this)."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from _tiny import TINY_PROTOCOL
from benchmark.cli import main

pytest.importorskip("optuna_dashboard")


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def _get(url: str, attempts: int = 50) -> tuple[int, bytes]:
    """GET with a bounded retry loop while the server thread starts."""
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.read()
        except ConnectionError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("journal", [False, True])
def test_dashboard_serves_a_tuned_study(tiny_env, tmp_path, monkeypatch, journal):
    from benchmark.tuning.dashboard import dashboard_app

    monkeypatch.chdir(tmp_path)
    storage = f"journal:///{tmp_path / 'studies.log'}" if journal else "sqlite:///results/benchmark.db"
    assert main(["tune", "--loss", "contrastive", "--dataset", "synthetic", *TINY_PROTOCOL, "--trials", "1",
                 "--storage", storage]) == 0
    server = make_server("127.0.0.1", 0, dashboard_app(storage), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        status, body = _get(f"{base}/api/studies")
        assert status == 200
        [study] = json.loads(body)["study_summaries"]
        assert study["study_name"] == "synthetic-contrastive-quick"
        status, body = _get(f"{base}/api/studies/{study['study_id']}")
        assert status == 200
        detail = json.loads(body)
        assert len(detail["trials"]) == 1 and detail["trials"][0]["state"] == "Complete"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_missing_storage_is_one_line(tmp_path, capsys):
    assert main(["dashboard", "--storage", f"sqlite:///{tmp_path / 'nope.db'}"]) == 2
    assert "Traceback" not in capsys.readouterr().err
