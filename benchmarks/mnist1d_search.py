"""Issue-3 target: a search on MNIST-1D (procedurally generated: 4,000 train / 1,000 test) with
successive halving, on a 2-core CPU — best test accuracy >= 90% (a plain MLP gets ~68%).

Usage: python benchmarks/mnist1d_search.py [--budget 36] [--epochs 27] [--quick] (see train_search.py)
Last line: JSON with keys n_archs, wall_s, best_test_acc (and more).
"""
from train_search import main

if __name__ == "__main__":
    main(__doc__.splitlines()[0], {"dataset": "mnist1d", "budget": 36, "epochs": 27, "min_epochs": 3,
                                   "recipe": {"batch_size": 64, "lr": 0.003}})
