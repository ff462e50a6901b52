"""Issue-3 target: a search of >= 30 macro-space architectures on scikit-learn's digits with
successive halving, on a 2-core CPU — wall time <= 10 min, best test accuracy >= 97%.

Usage: python benchmarks/digits_search.py [--budget 54] [--epochs 27] [--quick] (see train_search.py)
Last line: JSON with keys n_archs, wall_s, best_test_acc (and more).
"""
from train_search import main

if __name__ == "__main__":
    main(__doc__.splitlines()[0], {"dataset": "digits", "budget": 54, "epochs": 27, "min_epochs": 1,
                                   "recipe": {"batch_size": 64, "lr": 0.003}})
