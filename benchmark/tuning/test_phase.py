"""``test``: retrain the study's best configuration ``reproductions`` times and evaluate on the test classes.

Each reproduction trains the 4 fold models with its own seed, then embeds the test set with each fold's best
checkpoint: **separated-128** averages the 4 models' metrics, **concatenated-512** evaluates the 4 L2-normalised
128-d embeddings concatenated. A reproduction is stored in one transaction once both are known, so an interrupted
test resumes at the first missing reproduction.
"""

from __future__ import annotations

import logging

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from benchmark.errors import UserError
from benchmark.evaluation.embed import compute_embeddings, concatenate_normalized, l2_normalize
from benchmark.evaluation.metrics import retrieval_metrics
from benchmark.evaluation.registry import MODES, OBJECTIVE
from benchmark.results import ResultsStore, redact_url, collect_provenance, summarize_test_results
from benchmark.results.artifacts import artifact_id, default_location, fold_model_file, open_store, remove, write
from benchmark.search_space import format_params
from benchmark.training.device import describe_device
from benchmark.training.experiment import Experiment
from benchmark.training.fold import FoldTrainer
from benchmark.training.progress import Bar
from benchmark.training.run import run_folds
from benchmark.training.seeding import derive_seed
from benchmark.tuning.abandoned import close_abandoned_runs
from benchmark.tuning.namespace import namespaced
from benchmark.tuning.storage import open_storage
from benchmark.tuning.studies import check_compatible, study_name

logger = logging.getLogger(__name__)

# The untrained fold models' test metrics are stored beside each reproduction's, as modes of their own.
UNTRAINED_PREFIX = "untrained_"
# Reproduction seeds live in their own range so they never coincide with tuning-trial seeds.
_REPRODUCTION_SEED_OFFSET = 1_000_000
# Retrieval examples stored per reproduction (the report shows those of each dataset's best configuration).
RETRIEVAL_QUERIES = 8
RETRIEVAL_NEIGHBOURS = 5


def best_params(storage_url: str, name: str, experiment: Experiment) -> dict:
    """The best trial's parameters, after checking the study was tuned on the same split of the same data, under
    the same protocol settings, with the same loss code."""
    try:
        study = optuna.load_study(study_name=name, storage=open_storage(storage_url))
    except KeyError:
        raise UserError(f"no study {name!r} in {redact_url(storage_url)}; run `benchmark tune` first") from None
    check_compatible(study.user_attrs, experiment, name)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise UserError(f"study {name!r} has no completed trial yet; run `benchmark tune` first")
    return dict(study.best_trial.params)


class TestSet:
    """The test classes' images; query = reference, except In-Shop's query -> gallery retrieval."""

    __test__ = False  # not a pytest test class despite the name

    def __init__(self, experiment: Experiment):
        dataset = experiment.dataset
        labels = dataset.labels
        if dataset.query_mask is not None:
            self.query = np.flatnonzero(dataset.query_mask)
            self.reference = np.flatnonzero(dataset.gallery_mask)
        else:
            self.query = np.flatnonzero(np.isin(labels, np.asarray(experiment.splits.test)))
            self.reference = None
        self.paths = dataset.paths
        self.labels = labels


def configuration_name(study: str, fixed: dict) -> str:
    """The results key of a test of fixed parameters: the study's name plus the values set by hand, e.g.
    ``synthetic-proxy_anchor-quick[scale_end=4,scale_schedule=linear]``."""
    return f"{study}[{','.join(f'{k}={fixed[k]}' for k in sorted(fixed))}]"


def run_test(experiment: Experiment, storage_url: str, results_url: str, reproductions: int, seed: int,
             fixed: dict | None = None, keep_models: str = "best", models_location: str | None = None) -> pd.DataFrame:
    """Test the study's best parameters, or -- with ``fixed`` -- the search space's defaults with ``fixed`` set
    (no study needed: e.g. a published configuration, or one scale schedule against another).

    ``keep_models``: ``all`` keeps every reproduction's fold models in the artifact store at ``models_location``
    (default: next to the results database), ``best`` only those of the reproduction with the highest
    separated-128 test MAP@R so far, ``none`` nothing."""
    e = experiment
    name = namespaced(e.study_prefix, study_name(e.dataset_name, e.loss_name, e.label))
    if fixed:
        name = configuration_name(name, fixed)
        params = {**e.search_space.defaults(), **fixed}
    else:
        # Parameters the search did not vary are not in the trial's params: they keep the search space's value.
        params = {**e.search_space.defaults(), **best_params(storage_url, name, e)}
    results = ResultsStore(results_url)
    close_abandoned_runs(results, name)  # a reproduction a killed `test` left "running" is retrained below
    done = results.completed_reproductions(name)
    if done:
        logger.info("%d of %d reproductions already stored", len(done & set(range(reproductions))), reproductions)
    trainer = e.trainer(params)
    test_set = TestSet(e)
    config = {"protocol": e.protocol.to_dict(), "weights": e.weights, "split_scheme": e.splits.scheme,
              "loss_code_sha256": e.search_space.code_sha256, "identity": e.identity(), **e.scale_record(params)}
    # Each reproduction is claimed atomically: several `benchmark test` processes on one study share the work.
    bar = Bar("outer", reproductions, "reproductions", initial=len(results.completed_reproductions(name)
                                                                   & set(range(reproductions))))
    while (record := results.claim_reproduction(
            reproductions, lambda r: derive_seed(seed, _REPRODUCTION_SEED_OFFSET + r), study_name=name,
            dataset=e.dataset_name, loss=e.loss_name, protocol=e.label, params=params, config=config,
            split_hash=e.splits.hash, provenance=collect_provenance(describe_device(e.device)))) is not None:
        reproduction, rep_seed = record.reproduction, record.seed
        logger.info("reproduction %d/%d of %s with %s", reproduction + 1, reproductions, name, format_params(params))
        with record:
            folds = run_folds(trainer, e.fold_run, seed=rep_seed)
            for fold in folds:
                record.fold(fold)
            per_model = embed_test(trainer, [f.state for f in folds], test_set)
            metrics = score_test(per_model, test_set, e.recall_at)
            # The same fold models before training (same seeds, so the same initial weights): "did it learn?"
            untrained = score_test(embed_test(trainer, [trainer.untrained_state(f.seed) for f in folds], test_set),
                                   test_set, e.recall_at)
            metrics.update({f"{UNTRAINED_PREFIX}{mode}": values for mode, values in untrained.items()})
            results.record_retrieval_examples(record.run_id, retrieval_examples(per_model, test_set))
            record.test_metrics(reproduction, rep_seed, metrics)
        if keep_models != "none":
            keep_fold_models(results, models_location or default_location(results_url), keep_models,
                             record.run_id, name, reproduction, folds, metrics, _model_meta(e, name, reproduction,
                                                                                             params))
        logger.info("reproduction %d/%d: separated-128 MAP@R %.4f (untrained %.4f), concatenated-512 MAP@R %.4f "
                    "(untrained %.4f)", reproduction + 1, reproductions,
                    *(metrics[f"{prefix}{mode}"][OBJECTIVE] for mode in MODES for prefix in ("", UNTRAINED_PREFIX)))
        bar.update()
    bar.close()
    others = [run for run in results.running_runs(name) if run["kind"] == "test"]
    if others:
        logger.info("reproduction(s) %s still being trained by other processes (%s)",
                    ", ".join(str(run["reproduction"]) for run in others),
                    ", ".join(sorted({f"{run['hostname']}:{run['pid']}" for run in others})))
    summary = summarize_test_results(results_url)
    summary = summary[summary["study_name"] == name].copy()
    summary.attrs["params"] = params  # what was tested, for the caller to show
    return summary


def keep_fold_models(results: ResultsStore, location: str, mode: str, run_id: int, name: str, reproduction: int,
                     folds: list, metrics: dict, meta: dict) -> None:
    """Write this reproduction's fold models to the artifact store (``best``: only if it beats the kept one, which
    is then removed) and record them."""
    kept = results.kept_models(name)
    if mode == "best":
        score = metrics["separated_128"]["mean_average_precision_at_r"]
        previous = [m for m in kept if m["run_id"] != run_id]
        if any(m["map_at_r"] is not None and m["map_at_r"] >= score for m in previous):
            return
    store = open_store(location)
    files = []
    for fold in folds:
        content = fold_model_file(fold.state["model"], {**meta, "fold": fold.fold, "best_epoch": fold.best_epoch})
        artifact = artifact_id(name, reproduction, fold.fold)
        files.append({"fold": fold.fold, "artifact_id": artifact, "sha256": write(store, artifact, content),
                      "bytes": len(content)})
    results.record_models(run_id, name, reproduction, location, files)
    logger.info("kept the %d fold models of reproduction %d in %s", len(files), reproduction, location)
    if mode == "best":
        for old in previous:
            remove(old["location"], old["artifact_id"])
        results.forget_models({m["run_id"] for m in previous})


def _model_meta(e: Experiment, name: str, reproduction: int, params: dict) -> dict:
    """What a kept model file says about itself: enough to rebuild the model and its evaluation transform."""
    return {"study": name, "reproduction": reproduction, "loss": e.loss_name, "dataset": e.dataset_name,
            "protocol": e.protocol.to_dict(), "split_scheme": e.splits.scheme, "split_hash": e.splits.hash,
            "weights": e.weights, "params": dict(params)}


def embed_test(trainer: FoldTrainer, states: list[dict], test_set: TestSet) -> list[tuple]:
    """Each fold model's raw embeddings of the test queries (and of the gallery, for In-Shop)."""
    per_model = []  # (query embeddings, reference embeddings or None), one pair per fold model
    for state in states:
        model = trainer.build_model()
        model.load_state_dict(state["model"])

        def embed(indices, model=model):
            loader = trainer.eval_loader([test_set.paths[i] for i in indices], test_set.labels[indices])
            embeddings, _ = compute_embeddings(model, loader, trainer.device, trainer.protocol.precision)
            return embeddings

        per_model.append((embed(test_set.query),
                          None if test_set.reference is None else embed(test_set.reference)))
    return per_model


def score_test(per_model: list[tuple], test_set: TestSet, recall_at) -> dict[str, dict]:
    """Separated-128 (each fold model alone, metrics averaged) and concatenated-512 metrics."""
    query_labels = test_set.labels[test_set.query]
    reference_labels = None if test_set.reference is None else test_set.labels[test_set.reference]

    def score(query, reference):
        return retrieval_metrics(query, query_labels, reference, reference_labels, recall_at=recall_at)

    separated = [score(q, r) for q, r in per_model]  # retrieval_metrics L2-normalises its inputs
    concatenated = score(
        concatenate_normalized([q for q, _ in per_model]),
        None if test_set.reference is None else concatenate_normalized([r for _, r in per_model]),
    )
    return {"separated_128": _average(separated), "concatenated_512": concatenated}


def evaluate_test(trainer: FoldTrainer, states: list[dict], test_set: TestSet, recall_at) -> dict[str, dict]:
    """Separated-128 and concatenated-512 metrics of the fold models' checkpoints on the test set."""
    return score_test(embed_test(trainer, states, test_set), test_set, recall_at)


def retrieval_examples(per_model: list[tuple], test_set: TestSet, queries: int = RETRIEVAL_QUERIES,
                       k: int = RETRIEVAL_NEIGHBOURS) -> list[dict]:
    """The ``k`` nearest neighbours (concatenated-512, cosine) of ``queries`` fixed test queries: evenly spaced
    over the test queries in dataset order, so every loss and reproduction shows the same ones."""
    # Unit length again after concatenating unit parts: the similarities shown are cosines.
    query = l2_normalize(concatenate_normalized([q for q, _ in per_model]))
    same = test_set.reference is None
    reference = query if same else l2_normalize(concatenate_normalized([r for _, r in per_model]))
    reference_rows = test_set.query if same else test_set.reference
    picked = np.unique(np.linspace(0, len(query) - 1, min(queries, len(query))).round().astype(int))
    similarities = query[picked] @ reference.T
    if same:
        similarities[np.arange(len(picked)), picked] = -np.inf  # a query is not its own neighbour
    k = min(k, similarities.shape[1] - int(same))
    nearest = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
    examples = []
    for position, (row, order) in enumerate(zip(picked, nearest)):
        q = test_set.query[row]
        examples.append({
            "position": position, "query_path": str(test_set.paths[q]), "query_label": int(test_set.labels[q]),
            "neighbours": [{"path": str(test_set.paths[reference_rows[j]]),
                            "label": int(test_set.labels[reference_rows[j]]),
                            "similarity": float(similarities[position, j])} for j in order],
        })
    return examples


def _average(metrics: list[dict]) -> dict:
    averaged = {key: float(np.mean([m[key] for m in metrics])) for key in metrics[0] if key != "recall_at_k"}
    averaged["recall_at_k"] = {k: float(np.mean([m["recall_at_k"][k] for m in metrics]))
                               for k in metrics[0]["recall_at_k"]}
    return averaged
