# Run only as `python -m minirtrl.copy`: run as a file it would shadow the stdlib `copy` module.
"""``python -m minirtrl.copy``: string memorisation (copy) with a curriculum.

Trains a depth-L RHN fully online (one Adam step per character, B streams) on the copy
task of the OK authors' code (Benzing et al. 2019; ``drivers.copytask``) and reports the
curriculum level ``T`` (the copy distance is T+1 characters) and the running error
``bits`` against the characters seen. The OK authors report, for n=128, ``ok`` rank 16,
batch 16, lr 10^-3.5, T ≈ 34 after 1M steps and ≈ 42 after 2M steps (the mean of the
five sample runs their code ships).

    python -m minirtrl.copy --algo kf --hidden 64 --steps 100000 --log copy.jsonl
"""

import sys

from . import cli, loop
from .copytask import CopyTask
from .errors import command

PROG = "minirtrl.copy"

DESCRIPTION = (
    "Copy task with a curriculum: learn to repeat a random bit string after a "
    "blank gap, online, while the string length T_ grows whenever the running error drops "
    "below 0.15 bits per character."
)


def make_parser():
    return cli.make_parser(
        "python -m minirtrl.copy", DESCRIPTION,
        algo="ok", hidden=128, batch=16, lr=10**-3.5, rank=16, clip=16.0, steps=2_000_000,
    )


def main(argv=None):
    """Run the copy driver with the command-line arguments ``argv``; returns the exit status."""

    def body():
        args = cli.parse(make_parser(), argv)
        if isinstance(args, int):
            return args
        return loop.run(args, CopyTask(args.batch), prog=PROG)

    return command(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
