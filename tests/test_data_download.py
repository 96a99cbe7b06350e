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


class _ShortHandler(http.server.BaseHTTPRequestHandler):
    """Promises 1000 bytes, sends 100, closes."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"x" * 100)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_short_read_is_not_accepted_as_complete(tmp_path):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ShortHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    data_root = tmp_path / "data"
    try:
        code, _, err = run_cli(["datasets", "download", "cub200", "--data-root", str(data_root),
                                "--url", f"http://127.0.0.1:{httpd.server_address[1]}/a.tgz"])
    finally:
        httpd.shutdown()
        httpd.server_close()
    lines = err.strip().splitlines()  # an INFO progress line may come first
    assert code == 2 and lines[-1].startswith("error: the download of") and "100 of 1000 bytes" in lines[-1]
    assert sum(line.startswith("error:") for line in lines) == 1 and "Traceback" not in err
    assert list(data_root.iterdir()) == []


def _truncated_tgz(tmp_path) -> bytes:
    served = tmp_path / "tmp_served"
    served.mkdir()
    _cub_archive(tmp_path, served)
    data = (served / "CUB_200_2011.tgz").read_bytes()
    return data[: len(data) * 2 // 3]


def _corrupt_zip(tmp_path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("CUB_200_2011/a.txt", "x" * 5000)
    data = bytearray(buffer.getvalue())
    data[40:60] = b"\xff" * 20  # the member's compressed bytes
    return bytes(data)


def _zip_with_bad_directory(tmp_path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("CUB_200_2011/a.txt", "x")
    data = bytearray(buffer.getvalue())
    directory = data.rfind(b"PK\x01\x02")
    data[directory:directory + 4] = b"XXXX"  # the central directory entry: ZipFile() itself fails
    return bytes(data)


@pytest.mark.parametrize("make", [_truncated_tgz, _corrupt_zip, _zip_with_bad_directory])
def test_truncated_or_corrupt_archive_is_one_line(tmp_path, server, make):
    served, url = server
    data = make(tmp_path)
    (served / "archive").write_bytes(data)
    data_root = tmp_path / "data"
    code, _, err = run_cli(["datasets", "download", "cub200", "--data-root", str(data_root), "--url",
                            f"{url}/archive", "--md5", hashlib.md5(data).hexdigest()])
    lines = err.strip().splitlines()  # INFO progress lines may come first
    assert code == 2 and lines[-1].startswith("error: ") and "Traceback" not in err, err
    assert sum(line.startswith("error:") for line in lines) == 1
    assert "cannot unpack" in lines[-1] or "neither a tar nor a zip" in lines[-1]
    assert list(data_root.iterdir()) == []


def test_read_only_data_root_is_one_line(tmp_path, server):
    import os

    served, url = server
    md5 = _cub_archive(tmp_path, served)
    data_root = tmp_path / "data"
    data_root.mkdir()
    data_root.chmod(0o555)
    try:
        if os.access(data_root, os.W_OK):
            pytest.skip("running as a user who may write anywhere (root)")
        code, _, err = run_cli(["datasets", "download", "cub200", "--data-root", str(data_root),
                                "--url", f"{url}/CUB_200_2011.tgz", "--md5", md5])
    finally:
        data_root.chmod(0o755)
    assert code == 2 and "cannot write into the data root" in err and err.count("\n") == 1


def test_data_root_under_a_file_is_one_line(tmp_path, server):
    served, url = server
    md5 = _cub_archive(tmp_path, served)
    (tmp_path / "a_file").write_text("x")
    code, _, err = run_cli(["datasets", "download", "cub200", "--data-root", str(tmp_path / "a_file" / "data"),
                            "--url", f"{url}/CUB_200_2011.tgz", "--md5", md5])
    assert code == 2 and "cannot write into the data root" in err and err.count("\n") == 1, err
