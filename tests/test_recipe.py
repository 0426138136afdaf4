"""The training recipe lives in train/: one TrainConfig.for_spec, one train(), one score_int8(),
and every caller (rnnpool-nas train, the search's trials, export) goes through them."""

from __future__ import annotations

import json

import optuna
import pytest

from rnnpool_nas.arch.presets import get_preset
from rnnpool_nas.errors import UserError
from rnnpool_nas.run.budget import Budget
from rnnpool_nas.search.runner import SearchConfig, make_ask_tell, train_trial
from rnnpool_nas.search.space import SearchSpace
from rnnpool_nas.run.store import RunStore
from rnnpool_nas.train.loop import TrainResult
from rnnpool_nas.train.recipe import TrainConfig, check_data


def test_the_recipe_knows_classifiers_and_detectors():
    classifier, detector = get_preset("rnnpool-tiny"), get_preset("rnnpool-face-m4")
    c = TrainConfig.for_spec(classifier, epochs=3)
    assert (c.batch_size, c.lr, c.warmup_epochs, c.epochs) == (128, 0.05, 0.0, 3)
    d = TrainConfig.for_spec(detector, epochs=20)
    assert (d.batch_size, d.lr, d.warmup_epochs) == (16, 0.01, 2.0)  # warm-up: a tenth of the run, at most 5
    assert TrainConfig.for_spec(detector, epochs=100).warmup_epochs == 5.0
    given = TrainConfig.for_spec(detector, epochs=20, batch_size=8, lr=0.1, warmup_epochs=0.0, seed=3, threads=1)
    assert (given.batch_size, given.lr, given.warmup_epochs, given.seed, given.threads) == (8, 0.1, 0.0, 3, 1)


def test_a_detector_needs_detection_data_and_the_reverse():
    with pytest.raises(UserError, match="face detector"):
        check_data(get_preset("rnnpool-face-m4"), "fashion-mnist")
    with pytest.raises(UserError, match="is a classifier"):
        check_data(get_preset("rnnpool-tiny"), "faces-synth")


def test_a_detection_search_trains_its_candidates_with_the_detector_recipe(tmp_path, monkeypatch):
    """What a Ray worker runs for a face-detection candidate (the config the search's Tune
    searcher hands out, then ``train_trial``) builds a DetectionTrainer with the detector's
    recipe: batch 16, lr 0.01, a warm-up, not the classifier's batch 128 and lr 0.05."""
    from rnnpool_nas.search.tune_searcher import TuneSearcher
    from rnnpool_nas.train.detection import DetectionTrainer

    space = SearchSpace.load("face-detection")
    budget = Budget(ram_bytes=64 * 2**20)
    cfg = SearchConfig(space="face-detection", budget=budget, out=str(tmp_path / "run"), trials=2, epochs=20,
                       limit=8, dataset="faces-synth")
    store = RunStore.create(cfg.out, cfg.to_dict() | {"space": space.to_dict()})
    study = optuna.create_study(directions=["maximize", "minimize"], storage=store.storage_url, study_name="search")
    searcher = TuneSearcher(make_ask_tell(space, budget, store, cfg, lambda line: None).attach(study), threads=1)
    config = searcher.suggest("t0")
    assert config["spec"]["detection"] is not None

    seen = []

    def fit(self, callback=None, progress=None):
        seen.append((type(self), self.config))
        return TrainResult("complete", "", self.config.epochs, 0.5, 0.1, [])

    monkeypatch.setattr(DetectionTrainer, "fit", fit)
    train_trial(config)
    [(trainer, used)] = seen
    assert trainer is DetectionTrainer
    assert (used.batch_size, used.lr, used.warmup_epochs, used.epochs) == (16, 0.01, 2.0, 20)
    metrics = json.loads((tmp_path / "run" / "trials" / f"{config['number']:04d}" / "metrics.json").read_text())
    assert metrics["status"] == "complete" and metrics["train_config"]["batch_size"] == 16
