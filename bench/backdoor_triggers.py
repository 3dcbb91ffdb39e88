"""How well the trigger search alone screens digits-backdoor (no metanetwork training).

Reads (or computes once) the zoo's trigger-search features with the digits-backdoor
default config (:mod:`models.triggers`, the cache ``models.fit.train_on_zoo`` uses), prints
the AUC of the best attack rate and of the best mean class probability, and the test
accuracy of gradient-boosted trees and of logistic regression fitted on the train split.

    .venv/bin/python -m bench.backdoor_triggers zoos/digits-backdoor
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from models.data import read_zoo, zoo_cache_file, zoo_graphs
from models.fit import default_config, print_search_progress
from models.metanet import GraphMetanet
from models.triggers import cached_trigger_features


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("zoo")
    args = parser.parse_args()
    zoo = read_zoo(args.zoo)
    mcfg = default_config(zoo.task, zoo.name)
    readout = GraphMetanet(mcfg).trigger_readout
    readout.init_digits()
    graph_list = zoo_graphs(zoo, mcfg.max_kernel)
    cache = zoo_cache_file(zoo, f"trigger-features-{readout.key()}")
    cached_trigger_features(graph_list, readout, cache, print_search_progress)
    x = torch.cat([g.trigger_features for g in graph_list]).numpy()
    y = np.array([r["target"] for r in zoo.rows])
    split = np.array([r["split"] for r in zoo.rows])
    train, test = split == "train", split == "test"
    classes = mcfg.readout_outputs
    print(f"{len(y)} networks ({int(y.sum())} backdoored), test {int(test.sum())}")
    print(f"AUC best attack rate {roc_auc_score(y, x[:, 0]):.3f}, "
          f"best mean probability {roc_auc_score(y, x[:, 2 * classes]):.3f}")
    for seed in (0, 1, 2):
        trees = HistGradientBoostingClassifier(random_state=seed).fit(x[train], y[train])
        print(f"trees seed {seed}: test accuracy {(trees.predict(x[test]) == y[test]).mean():.3f}")
    logistic = LogisticRegression(max_iter=2000).fit(x[train], y[train])
    print(f"logistic regression: test accuracy {(logistic.predict(x[test]) == y[test]).mean():.3f}")


if __name__ == "__main__":
    main()
