"""``python -m minirtrl.noise``: how noisy each estimator is, against exact RTRL."""

if __name__ == "__main__":  # a SIGINT while the command loads is one line too
    from .drivers.entry import start

    start("noise")
