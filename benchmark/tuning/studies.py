"""What a study records about itself, and the checks that keep its trials comparable: its name, the settings written
when it is created (split, protocol, identity, pruner, samplers, whether trial 0 is the defaults), the compatibility
checks when ``tune`` resumes it or ``test`` reads it, and creating empty studies ahead of the workers (``db init``).
"""

from __future__ import annotations

import logging

import optuna

from benchmark.config import check_same_identity, check_same_protocol
from benchmark.data.splits import check_split_hash
from benchmark.errors import UserError
from benchmark.search_space import SearchSpace, check_same_code
from benchmark.training.experiment import Experiment
from benchmark.tuning.pruning import pruner_settings

logger = logging.getLogger(__name__)

SAMPLERS_ATTR = "samplers"
IDENTITY_ATTR = "identity"  # Experiment.identity(): weights, precision, BatchNorm, batch sampler, search space
LABEL_ATTR = "label"  # Experiment.label: the protocol part of the name, what the report shows
NONFINITE_ATTR = "nonfinite_loss_fold"  # set on a trial scored NONFINITE_SCORE
NONFINITE_SCORE = 0.0
SEED_DEFAULTS_ATTR = "seed_defaults"  # study attribute: whether trial 0 was the search space's defaults
SEEDED_ATTR = "seeded"  # trial attribute of that trial
PRUNER_ATTR = "pruner"
PRUNER_SETTINGS_ATTR = "pruner_settings"


def study_name(dataset: str, loss: str, protocol: str) -> str:
    return f"{dataset}-{loss}-{protocol}"


def record_or_check_settings(study: optuna.Study, e: Experiment, *, pruner: str, sampler: str, total: int,
                             seed_defaults: bool) -> None:
    """A new study records ``e``'s split, protocol and identity; an existing one must match them (and ``pruner``).
    Either way the latest ``total`` and every ``sampler`` used are recorded, and the process that finds the study
    empty decides (once) whether trial 0 is the search space's defaults."""
    name = study.study_name
    attrs = study.user_attrs
    p = e.protocol
    settings = pruner_settings(pruner, p.max_epochs, p.num_folds)
    if "split_hash" not in attrs:
        study.set_user_attr("split_hash", e.splits.hash)
        study.set_user_attr("dataset", e.dataset_name)
        study.set_user_attr("loss", e.loss_name)
        study.set_user_attr("protocol", e.protocol.to_dict())
        study.set_user_attr("split_scheme", e.splits.scheme)
        study.set_user_attr("search_space", e.search_space.fingerprint())
        study.set_user_attr(IDENTITY_ATTR, e.identity())
        study.set_user_attr(LABEL_ATTR, e.label)
        if e.search_space.code_sha256:
            study.set_user_attr("loss_code_sha256", e.search_space.code_sha256)
    else:
        check_compatible(attrs, e, name)
        check_same_study_identity(attrs, e, name)
        stored = attrs.get(PRUNER_ATTR)
        if stored is not None and stored != pruner:
            raise UserError(f"study {name} prunes with --pruner {stored}, not {pruner}: its trials "
                            "would be judged by two rules; use the same --pruner, or another --storage")
        recorded = attrs.get(PRUNER_SETTINGS_ATTR)
        if recorded is not None and recorded != settings:
            changed = ", ".join(f"{k} {recorded.get(k)} -> {settings.get(k)}"
                                for k in sorted(set(recorded) | set(settings)) if recorded.get(k) != settings.get(k))
            raise UserError(f"study {name} was pruned by other rules than this version's --pruner {pruner} "
                            f"({changed}): its trials would be judged by two rules; finish it with the version that "
                            "started it, or use another --storage")
    if attrs.get(PRUNER_ATTR) is None:
        study.set_user_attr(PRUNER_ATTR, pruner)
        # The rules behind the name (from which fold, reduction factor, start-up trials, ...), as first run.
        study.set_user_attr(PRUNER_SETTINGS_ATTR, settings)
    study.set_user_attr("total_trials", total)  # the budget the report shows; the latest --trials
    # Every sampler that proposed trials of this study (several when workers or resumes differ), for the report.
    used = list(attrs.get(SAMPLERS_ATTR, []))
    if sampler not in used:
        study.set_user_attr(SAMPLERS_ATTR, [*used, sampler])
    if SEED_DEFAULTS_ATTR not in attrs and not study.get_trials(deepcopy=False):
        # Decided once, by the process that finds the study empty; the choice is recorded either way.
        study.set_user_attr(SEED_DEFAULTS_ATTR, seed_defaults)
        if seed_defaults:
            _enqueue_defaults(study, e.search_space)


def _enqueue_defaults(study: optuna.Study, space: SearchSpace) -> None:
    """Trial 0 = what is already known: the searched parameters' defaults that lie in their (possibly
    --space-narrowed) ranges; a default outside its range is left to the sampler."""
    fixed = {}
    for name, spec in space.params.items():
        if not spec.tune:
            continue
        if spec.type == "categorical":
            inside = spec.default in spec.choices
        else:
            inside = spec.low <= spec.default <= spec.high
        if inside:
            fixed[name] = spec.default
    study.enqueue_trial(fixed, user_attrs={SEEDED_ATTR: "search-space defaults"}, skip_if_exists=True)
    logger.info("study %s: trial 1 is the search space's defaults %s", study.study_name, fixed)


def check_compatible(attrs: dict, experiment: Experiment, name: str) -> None:
    """Refuse to add to, or test, study ``name`` (its user attributes ``attrs``) if it was created on another split
    of the data, under other protocol settings or with another version of a plugin loss's code."""
    check_split_hash(attrs.get("split_hash", experiment.splits.hash), experiment.splits.hash)
    if "protocol" in attrs:
        check_same_protocol(attrs["protocol"], experiment.protocol, name)
    check_same_code(attrs.get("loss_code_sha256"), experiment.search_space, name)


def check_same_study_identity(attrs: dict, experiment: Experiment, name: str) -> None:
    """Refuse to add trials to study ``name`` whose identity (weights, precision, BatchNorm, batch sampler, search
    space) differs from ``experiment``'s; studies older than the identity attribute have their search-space
    fingerprint checked."""
    stored = attrs.get(IDENTITY_ATTR) or {"search_space": attrs.get("search_space",
                                                                     experiment.search_space.fingerprint())}
    check_same_identity(stored, experiment.identity(), name)


def existing_trial_count(storage, name: str) -> int:
    """The trials study ``name`` has so far; 0 when it does not exist yet."""
    try:
        return len(optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False))
    except KeyError:
        return 0


def create_studies(storage, names: list[str]) -> dict[str, bool]:
    """Create the empty studies ``names`` (as ``Tuner`` would, before any worker starts); name -> whether it was
    created (False: it existed)."""
    existing = {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    created = {}
    for name in names:
        if name not in existing:
            # Concurrent init: load_if_exists turns losing the race into loading the winner's study.
            optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
        created[name] = name not in existing
    return created
