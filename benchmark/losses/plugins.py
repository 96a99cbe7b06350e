"""Losses from outside this repository: a PML-style class plus its search-space YAML, no fork needed.

Two ways to bring one in:
- an installed package that declares an entry point in the group ``dml_benchmark.losses`` (the packaging convention
  pytest plugins use), e.g. in its pyproject.toml::

      [project.entry-points."dml_benchmark.losses"]
      my_loss = "my_dml_loss.my_loss:MyLoss"

- ``--loss-module path/to/file.py``: a Python file whose ``LOSSES`` dict maps names to classes.

The class is built like pytorch-metric-learning's losses: ``Class(**hyperparameters)``, plus ``num_classes`` and
``embedding_size`` when its constructor takes them (a proxy/classifier loss, whose labels are then 0..C-1); it is
called as ``loss(embeddings, labels, indices_tuple)``. Its search space is ``<name>.yaml`` next to the file that
defines the class (or the class attribute ``search_space``, a path relative to that file), in the format of
``search_spaces/``; ``loss_lr`` there is the lr of the loss's own parameters (required when it has any). Scale
schedules and proxy diagnostics are for the built-in losses only.

The sha256 of the defining file is part of the loss's search-space fingerprint, so a study tuned with one version of
the code refuses trials from another.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from benchmark.errors import UserError

ENTRY_POINT_GROUP = "dml_benchmark.losses"
# The one hyperparameter that is not a constructor argument: the lr of the loss optimiser.
NOT_CONSTRUCTOR_PARAMS = {"loss_lr"}
# Arguments the trainer supplies per fold.
_PER_FOLD = {"num_classes", "embedding_size"}


@dataclass(frozen=True)
class PluginLoss:
    name: str
    loss_class: type
    search_space: Path
    origin: str  # "entry point <dist>: <value>" or "module <path>"
    source_file: Path
    source_sha256: str

    @property
    def constructor(self) -> inspect.Signature:
        return inspect.signature(self.loss_class.__init__)

    def takes(self, argument: str) -> bool:
        return argument in self.constructor.parameters

    @property
    def takes_any_keyword(self) -> bool:
        return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in self.constructor.parameters.values())


_LOADED: dict[str, PluginLoss] = {}  # from --loss-module, or entry points already looked up


def load_loss_module(path: str | Path) -> list[PluginLoss]:
    """Import ``path`` and register every loss of its ``LOSSES`` dict; returns them."""
    path = Path(path).expanduser().resolve()
    if not path.is_file() or path.suffix != ".py":
        raise UserError(f"--loss-module {path}: expected an existing .py file")
    module_name = f"_benchmark_loss_module_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        # Registered before running it, as a regular import would be (dataclasses and pickling look it up).
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[module_name]
            raise UserError(f"--loss-module {path} failed to import: {type(error).__name__}: {error}") from None
    losses = getattr(module, "LOSSES", None)
    if not isinstance(losses, dict) or not losses:
        raise UserError(f"--loss-module {path} defines no LOSSES dict; expected LOSSES = {{'my_loss': MyLoss}}")
    plugins = [_plugin(str(name), cls, f"module {path}") for name, cls in losses.items()]
    for plugin in plugins:
        _register(plugin)
    return plugins


def find_plugin(name: str) -> PluginLoss | None:
    """The plugin loss ``name`` (from a --loss-module, else an installed entry point), or None."""
    if name in _LOADED:
        return _LOADED[name]
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name == name:
            return _register(_from_entry_point(entry_point))
    return None


def all_plugins() -> list[PluginLoss]:
    """Every plugin loss: those loaded from modules and every installed entry point (imported here)."""
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name not in _LOADED:
            _register(_from_entry_point(entry_point))
    return sorted(_LOADED.values(), key=lambda p: p.name)


def _from_entry_point(entry_point) -> PluginLoss:
    dist = entry_point.dist.name if entry_point.dist is not None else "?"
    try:
        cls = entry_point.load()
    except Exception as error:
        raise UserError(f"loss {entry_point.name!r} (entry point {entry_point.value} of {dist}) failed to import: "
                        f"{type(error).__name__}: {error}") from None
    return _plugin(entry_point.name, cls, f"entry point {entry_point.value} ({dist})")


def _register(plugin: PluginLoss) -> PluginLoss:
    from benchmark.losses.registry import LOSS_NAMES

    if plugin.name in LOSS_NAMES:
        raise UserError(f"loss {plugin.name!r} from {plugin.origin} has the name of a built-in loss; rename it")
    known = _LOADED.get(plugin.name)
    if known is not None and known.source_file != plugin.source_file:
        raise UserError(f"loss {plugin.name!r} is defined twice: {known.origin} and {plugin.origin}")
    _LOADED[plugin.name] = plugin
    return plugin


def _plugin(name: str, cls, origin: str) -> PluginLoss:
    if not name.isidentifier():
        raise UserError(f"loss name {name!r} from {origin} must be a Python identifier, e.g. my_loss")
    if not inspect.isclass(cls):
        raise UserError(f"loss {name!r} from {origin} is {type(cls).__name__}, expected a loss class")
    source = inspect.getsourcefile(cls)
    if source is None:
        raise UserError(f"loss {name!r} from {origin}: the source file of {cls.__qualname__} cannot be found")
    source = Path(source).resolve()
    space = source.parent / getattr(cls, "search_space", f"{name}.yaml")
    if not space.is_file():
        raise UserError(f"loss {name!r} from {origin} has no search space: expected {space}")
    plugin = PluginLoss(name, cls, space, origin, source, hashlib.sha256(source.read_bytes()).hexdigest())
    _check_signature(plugin)
    return plugin


def _check_signature(plugin: PluginLoss) -> None:
    """Validated once when loaded: every required constructor argument is searched or supplied per fold, and every
    searched parameter reaches the constructor (a parameter the loss never reads would waste the search)."""
    from benchmark.search_space import load_search_space_file

    params = set(load_search_space_file(plugin.search_space).params)
    required = [
        name for name, p in list(plugin.constructor.parameters.items())[1:]
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    missing = [name for name in required if name not in params | _PER_FOLD]
    if missing:
        raise UserError(f"loss {plugin.name!r}: constructor argument(s) {', '.join(missing)} have no default and are "
                        f"not in {plugin.search_space}")
    if not plugin.takes_any_keyword:
        unused = sorted(name for name in params - NOT_CONSTRUCTOR_PARAMS if not plugin.takes(name))
        if unused:
            raise UserError(f"loss {plugin.name!r}: {plugin.search_space} searches {', '.join(unused)}, which "
                            f"{plugin.loss_class.__qualname__}.__init__ does not take")
