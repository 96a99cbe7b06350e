"""Study namespaces (``--study-prefix``): users of one shared database each work in their own set of studies."""

from __future__ import annotations


def namespaced(prefix: str, name: str) -> str:
    """``name`` inside the study namespace ``prefix``: ``alice/synthetic-proxy_anchor-quick``. Applied last, to
    whatever name a study gets (tune's, a sweep's, a fixed-parameter test's), so that the namespace composes with
    every naming scheme."""
    return f"{prefix}/{name}" if prefix else name


def in_namespace(name: str, prefix: str) -> bool:
    """Whether the study (or results key) ``name`` belongs to the namespace ``prefix``; no prefix: every study."""
    return not prefix or name.startswith(f"{prefix}/")
