"""Where every table and file of a run lives, declared once: RUN_DIR's layout.

    RUN_DIR/
      prep/     (jobs/)       examples/, user_features/, eval/, valid/, rejected/, rejected_<table>/,
                              vocab/items/, vocab/item_sampling/, vocab/item_features/, vocab/<feature>/
      model/    (ray_train/)  user_tower.pt, model_spec.json, item_embeddings.parquet, metrics.json,
                              checkpoints/, item2vec/, warm_start.pt
      recall/   (serving/)    table/run_date=D/, similar/run_date=D/, index/, channels/
      report/   (report/)     report.json, report.html
      compare/  (nightly)     tonight's lists and the last published ones on the same held-out users
      logs/     (watchnext)   each command's whole log, the engines' INFO lines included

Each folder is a stage's output, finished by its manifest (contract.MANIFEST); the tables'
schemas are in core.contract. A stage that reads another run's folder (a shared prep, the
previous night's model) takes that folder's layout alone: PrepLayout(path), ModelLayout(path).
"""

from __future__ import annotations

from dataclasses import dataclass

from core import storage


@dataclass(frozen=True)
class PrepLayout:
    """prep/: the training examples, the serving features, the targets and the vocabularies."""

    root: str

    @property
    def examples(self) -> str:
        return storage.join(self.root, "examples")

    @property
    def user_features(self) -> str:
        return storage.join(self.root, "user_features")

    @property
    def eval(self) -> str:
        """The test targets: each evaluated user's held-out watch, read once, by the report."""
        return storage.join(self.root, "eval")

    @property
    def valid(self) -> str:
        """The validation targets every choice reads (epochs, tuning, channel weights)."""
        return storage.join(self.root, "valid")

    @property
    def rejected(self) -> str:
        """The click rows quarantined by validation, each with its reason."""
        return storage.join(self.root, "rejected")

    def rejected_table(self, table: str) -> str:
        """The users or items rows quarantined as conflicts."""
        return storage.join(self.root, f"rejected_{table}")

    def vocab(self, name: str) -> str:
        """vocab/<name>: items, item_sampling, item_features, search_tokens or a categorical's."""
        return storage.join(self.root, "vocab", name)

    @property
    def item_vocab(self) -> str:
        return self.vocab("items")

    @property
    def item_sampling(self) -> str:
        return self.vocab("item_sampling")

    @property
    def item_features(self) -> str:
        return self.vocab("item_features")


@dataclass(frozen=True)
class ModelLayout:
    """model/: the exported towers, the training's metrics and its checkpoints."""

    root: str

    @property
    def user_tower(self) -> str:
        """The user tower's state_dict (never a pickle)."""
        return storage.join(self.root, "user_tower.pt")

    @property
    def spec(self) -> str:
        """model_spec.json: the tower's spec, the model version and the train settings."""
        return storage.join(self.root, "model_spec.json")

    @property
    def item_embeddings(self) -> str:
        return storage.join(self.root, "item_embeddings.parquet")

    @property
    def metrics(self) -> str:
        return storage.join(self.root, "metrics.json")

    @property
    def checkpoints(self) -> str:
        return storage.join(self.root, CHECKPOINTS)

    @property
    def item2vec(self) -> str:
        """Ray Train's run folder of the item2vec pre-training (train.init=item2vec)."""
        return storage.join(self.root, "item2vec")

    @property
    def warm_start(self) -> str:
        """The initial weights train.warm_start made, read by every worker."""
        return storage.join(self.root, "warm_start.pt")


CHECKPOINTS = "checkpoints"  # kept by a resumed training when its stage starts again


@dataclass(frozen=True)
class RecallLayout:
    """recall/: the per-user table, the similar-item table, the index and the channels' data."""

    root: str

    @property
    def table(self) -> str:
        return storage.join(self.root, "table")

    def table_partition(self, run_date: str) -> str:
        return storage.join(self.table, f"run_date={run_date}")

    @property
    def similar(self) -> str:
        return storage.join(self.root, "similar")

    def similar_partition(self, run_date: str) -> str:
        return storage.join(self.similar, f"run_date={run_date}")

    @property
    def index(self) -> str:
        """The sharded FAISS index (serving.index writes its own manifest inside)."""
        return storage.join(self.root, "index")

    @property
    def index_items(self) -> str:
        """The item index and id of every index row, in row order."""
        return storage.join(self.index, "items.parquet")

    @property
    def channels(self) -> str:
        """What the scoring actors merge beside the model's search: the item2item channel's
        co-watched neighbours of every item, the popular and fresh orders (serving.channels)."""
        return storage.join(self.root, "channels")


@dataclass(frozen=True)
class ReportLayout:
    """report/: the metrics as JSON and as a page."""

    root: str

    @property
    def json(self) -> str:
        return storage.join(self.root, "report.json")

    @property
    def html(self) -> str:
        return storage.join(self.root, "report.html")


@dataclass(frozen=True)
class RunLayout:
    """RUN_DIR and its four stage folders."""

    root: str

    @classmethod
    def of(cls, run_dir: str) -> RunLayout:
        """The layout of run_dir, made absolute (a local path or a filesystem URI)."""
        return cls(storage.absolute(run_dir))

    @property
    def prep(self) -> PrepLayout:
        return PrepLayout(storage.join(self.root, "prep"))

    @property
    def model(self) -> ModelLayout:
        return ModelLayout(storage.join(self.root, "model"))

    @property
    def recall(self) -> RecallLayout:
        return RecallLayout(storage.join(self.root, "recall"))

    @property
    def report(self) -> ReportLayout:
        return ReportLayout(storage.join(self.root, "report"))

    @property
    def logs(self) -> str:
        """Each command's whole log: COMMAND-UTCTIME.log (the console shows a part of it)."""
        return storage.join(self.root, "logs")

    @property
    def compare(self) -> str:
        """A nightly run's comparison with the lists the previous night published."""
        return storage.join(self.root, "compare")
