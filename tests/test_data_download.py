"""`benchmark datasets download` against a loopback HTTP server: checksum, safe extraction, atomicity."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
import zipfile

import pytest

from benchmark.data import get_dataset
from benchmark.data.download import extract
from benchmark.errors import UserError
from _data_helpers import make_cub, run_cli


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture()
def server(tmp_path):
    """(folder served, base URL) on 127.0.0.1."""
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _cub_archive(tmp_path, served, extra: dict[str, bytes] | None = None) -> str:
    """A tiny CUB_200_2011.tgz shaped like the official one; returns its md5."""
    source = tmp_path / "source"
    make_cub(source, classes=8)
    archive = served / "CUB_200_2011.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source / "cub200" / "CUB_200_2011", arcname="CUB_200_2011")
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_verifies_and_extracts(tmp_path, server):
    served, url = server
    md5 = _cub_archive(tmp_path, served)
    data_root = tmp_path / "data"
    code, out, err = run_cli(["datasets", "download", "cub200", "--data-root", str(data_root),
                              "--url", f"{url}/CUB_200_2011.tgz", "--md5", md5])
    assert code == 0, err
    assert out.strip() == str(data_root / "cub200")
    assert sorted(p.name for p in data_root.iterdir()) == ["cub200"]  # no temporary leftovers
    dataset = get_dataset("cub200", data_root)
    assert len(dataset) == 8 and dataset.class_ids.tolist() == list(range(1, 9))
    # A second call finds it in place.
    code, out, _ = run_cli(["datasets", "download", "cub200", "--data-root", str(data_root),
                            "--url", f"{url}/missing.tgz", "--md5", md5])
    assert code == 0 and out.strip() == str(data_root / "cub200")


@pytest.mark.parametrize("checksum", [["--md5", "0" * 32], ["--sha256", "f" * 64], []])
def test_wrong_checksum_leaves_nothing_behind(tmp_path, server, checksum):
    # Without --md5/--sha256 a mirror URL is held to the official archive's md5, which the test archive fails.
    served, url = server
    _cub_archive(tmp_path, served)
    data_root = tmp_path / "data"
    data_root.mkdir()
    code, out, err = run_cli(["datasets", "download", "cub200", "--data-root", str(data_root),
                              "--url", f"{url}/CUB_200_2011.tgz", *checksum])
    assert code == 2 and out == ""
    assert err.splitlines()[-1].startswith("error: checksum mismatch for ")
    assert list(data_root.iterdir()) == []


def test_archive_escaping_the_target_is_refused(tmp_path, server):
    served, url = server
    md5 = _cub_archive(tmp_path, served, extra={"../escaped.txt": b"x"})
    data_root = tmp_path / "data"
    data_root.mkdir()
    code, _, err = run_cli(["datasets", "download", "cub200", "--data-root", str(data_root),
                            "--url", f"{url}/CUB_200_2011.tgz", "--md5", md5])
    assert code == 2 and "cannot unpack" in err
    assert list(data_root.iterdir()) == []
    assert not list(tmp_path.rglob("escaped.txt"))


def test_archive_with_the_wrong_layout_is_not_installed(tmp_path, server):
    served, url = server
    archive = served / "other.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("README")
        tar.addfile(info, io.BytesIO(b""))
    data_root = tmp_path / "data"
    code, _, err = run_cli(["datasets", "download", "cub200", "--data-root", str(data_root), "--url",
                            f"{url}/other.tgz", "--sha256", hashlib.sha256(archive.read_bytes()).hexdigest()])
    assert code == 2 and "does not hold cub200 in the expected layout" in err
    assert list(data_root.iterdir()) == []


def test_unreachable_url_is_one_line(tmp_path, server):
    _, url = server
    code, _, err = run_cli(["datasets", "download", "cub200", "--data-root", str(tmp_path), "--url", f"{url}/nope.tgz"])
    assert code == 2 and err.startswith(f"error: cannot download {url}/nope.tgz: ") and err.count("\n") == 1


def test_zip_member_escaping_the_target_is_refused(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok/file.txt", "fine")
        zf.writestr("../../evil.txt", "bad")
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(UserError, match="escapes the target folder"):
        extract(archive, target)
    assert list(target.iterdir()) == [] and not list(tmp_path.rglob("evil.txt"))
