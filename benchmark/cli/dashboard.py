"""``benchmark dashboard``: optuna-dashboard on the benchmark's studies (optional extra ``dashboard``)."""

from __future__ import annotations

from benchmark.cli import _common
from benchmark.errors import UserError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "dashboard", help="serve optuna-dashboard on the studies (needs the 'dashboard' extra)",
        description="optuna-dashboard's web UI on the studies of --storage (SQLite, PostgreSQL or journal://), "
        "until Ctrl-C. The same as `optuna-dashboard URL` for SQLite/PostgreSQL; journal:// URLs work here too.")
    _common.add_storage_args(parser)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=int, default=8080, help="port (default: 8080)")
    parser.set_defaults(func=_dashboard)


def _dashboard(args) -> int:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from benchmark.tuning.dashboard import dashboard_app

    storage, _ = _common.storage_urls(args)
    _common.require_existing_storage(storage)
    app = dashboard_app(storage)

    class _Quiet(WSGIRequestHandler):
        def log_message(self, *args):  # one line per HTTP request would bury the address printed below
            pass

    try:
        server = make_server(args.host, args.port, app, handler_class=_Quiet)
    except OSError as error:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {error.strerror}; try another --port") from None
    print(f"optuna-dashboard on http://{args.host}:{server.server_port}/ (Ctrl-C to stop)", flush=True)
    with server:
        server.serve_forever()
    return 0
