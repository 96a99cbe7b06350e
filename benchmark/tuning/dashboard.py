"""optuna-dashboard (an optional extra) on our studies as they are: SQLite, PostgreSQL or a journal file, opened the
way every command opens them."""

from __future__ import annotations

from benchmark.errors import UserError
from benchmark.tuning.storage import open_storage


def dashboard_app(storage_url: str):
    """optuna-dashboard's WSGI application for the studies at ``storage_url``."""
    try:
        import optuna_dashboard
    except ImportError:
        raise UserError("optuna-dashboard is not installed: pip install 'dml-benchmark[dashboard]'") from None
    return optuna_dashboard.wsgi(open_storage(storage_url))
