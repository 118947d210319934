"""``python -m minirtrl.ptb --data DIR``: a character-level language model trained online.

Trains a depth-L RHN on a character corpus (Mikolov's char-PTB, or any UTF-8 text with
``--format raw``; reader: ``minirtrl.corpus``) and reports bits per character (bpc).

Training: ``B = --batch`` streams read the training text at evenly spaced offsets
``b·N // B`` (a circle: after the last symbol comes the first). The RTRL family (``rtrl``,
``uoro``, ``kf``, ``ok``, ``kf-avg``) takes one Adam step per character of every stream and
resets the state *and* the influence estimate of all streams together before characters
``t = 0, R, 2R, …`` of each stream (``R = --reset-every``, default 100; 0 = never), so each
gradient reaches back at most to the last multiple of R. ``bptt`` reads windows of
``K = --truncation`` characters, back-propagates each window to its start and carries the
state across windows with no resets at all (the ``--reset-every`` schedule does not apply
to it). The loop itself (clipping, Adam, logs, checkpoints, Ctrl-C, the non-finite guard)
is ``drivers.loop``; the task and the evaluation are ``drivers.text``.

Evaluation: every ``--eval-every`` optimiser steps the whole validation split, and at the
end the validation and the test split, are run with the current parameters (no updates)
as ``S = --eval-streams`` contiguous streams from a zero state, the state carried through
with no resets; ``evaluate`` returns the summed loss in bits over all N - 1 next-symbol
predictions of the split (each counted once, ``corpus.eval_streams``) and bpc is that over
N - 1. More streams are fewer sequential steps (faster on a batched backend) and equal in
expectation; each stream starts cold, so the figure rises by a few warm-up characters per
stream out of N/S (the OK authors' test script used 2 streams).

Reported figures (progress lines, ``--log`` JSON lines, the final summary):
``train_bpc`` a bias-corrected exponential moving average of the batch-mean training loss
in bits per character with decay 0.999 per character of a stream, i.e. a time constant of
about 1000 characters per stream (``m ← d^k m + (1 - d^k) bits``, ``w ← d^k w + (1 - d^k)``,
``train_bpc = m / w`` after a step of k characters); ``valid_bpc`` on the line following an
evaluation (and on the final line); ``test_bpc`` on the final line. An evaluation also
prints its own progress line with its duration.

Reference (the five sample runs shipped with the OK authors' code, Benzing et al. 2019):
n=256, ``ok`` rank 8, batch 32, lr 10^-3.5, reset every 100, 1M steps: validation
1.74–1.75 bpc.

    python -m minirtrl.ptb --data /path/to/ptb --algo kf --hidden 128 --log ptb.jsonl

Notation: ``N`` symbols of a split, ``V`` vocabulary size (n_in = n_out = V; 50 for PTB),
``B`` training streams, ``t`` position of the training streams (characters per stream
read so far), ``R`` reset interval, ``S`` evaluation streams, ``T`` their length
(``ceil((N - 1)/S)``), ``s`` the state s_t (S, n). Cost of an evaluation: T sequential
steps of O(S n (n + V)) each (one forward step and the readout), one host read at the end.
"""

import sys

from . import cli, loop
from .corpus import CorpusError, read_corpus
from .errors import Failure, command
from .outputs import Outputs
from .text import Evaluator, TextTask

PROG = "minirtrl.ptb"
DESCRIPTION = (
    "Character-level language model: an RHN trained online on B streams of the "
    "training text, evaluated in bits per character over the whole validation split every "
    "--eval-every steps and over the test split at the end."
)


# ---- command line -----------------------------------------------------------------------------
def make_parser():
    p = cli.make_parser(
        "python -m minirtrl.ptb", DESCRIPTION, algo="ok", hidden=256, batch=32, lr=10**-3.5,
        rank=8, clip=32.0, steps=1_000_000, truncation=25,
    )
    a = p.add_argument
    a("--data", metavar="DIR", required=True,
      help="directory holding the train, valid and test splits (see --format)")
    a("--format", default="mikolov", choices=("mikolov", "raw"),
      help="mikolov: ptb.char.{train,valid,test}.txt, characters separated by spaces, one "
           "sentence a line; raw: {train,valid,test}.txt of any UTF-8 text, every character a "
           "symbol; each file optionally .gz (default mikolov)")
    a("--unknown", action="store_true",
      help="map validation/test symbols that do not occur in the training split to one added "
           "unknown symbol (default: refuse them)")
    a("--reset-every", type=cli.nonnegative, default=None, metavar="R",
      help="RTRL family: reset the state and influence of all streams every R characters "
           "(default 100; 0 = never); bptt carries its state across windows instead")
    a("--eval-every", type=cli.nonnegative, default=10000, metavar="STEPS",
      help="evaluate on the whole validation split every STEPS optimiser steps (bptt: "
           "windows) and at the end (default 10000; 0 = only at the end, with the test split)")
    a("--eval-streams", type=cli.positive, default=8, metavar="S",
      help="cut valid/test into S contiguous streams, state carried through (default 8). "
           "More streams run faster on a batched backend and give the same figure up to a "
           "few warm-up characters per stream (the OK reference used 2)")
    return p


def parse(argv):
    """Parsed and checked arguments, or the exit status (``--help``, a bad flag)."""
    parser = make_parser()
    args = cli.parse(parser, argv)
    if isinstance(args, int):
        return args
    if args.algo == "bptt":
        if args.reset_every is not None:
            try:
                parser.error("--reset-every applies only to the RTRL family; bptt carries its "
                             "state across windows (see --truncation)")
            except SystemExit as exc:
                return exc.code
        args.reset_every = 0
    elif args.reset_every is None:
        args.reset_every = 100
    return args


def main(argv=None):
    """Run the char-PTB driver with the command-line arguments ``argv``; returns the exit status.

    Outputs are checked (and the checkpoint locked) before the corpus is read.
    """

    def body():
        args = parse(argv)
        if isinstance(args, int):
            return args
        with Outputs(args) as outputs:
            corpus = _read(args)
            print(f"{PROG}: {args.data}: {corpus.summary()}", flush=True)
            task = TextTask(corpus, args.batch, args.reset_every, data_format=args.format)
            return loop.run(args, task, prog=PROG, evaluate=Evaluator(corpus, args.eval_streams),
                            eval_every=args.eval_every, outputs=outputs)

    return command(PROG, body)


def _read(args):
    try:
        return read_corpus(args.data, args.format, unknown=args.unknown)
    except CorpusError as exc:
        message = str(exc).replace("allow unknown symbols", "pass --unknown")
        raise Failure(message.replace("use format ", "use --format ")) from None


if __name__ == "__main__":
    sys.exit(main())
