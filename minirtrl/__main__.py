"""``python -m minirtrl``: the commands, one line each."""

import os
import sys

COMMANDS = (
    ("copy", "train online on the copy task with a curriculum (string memorisation)"),
    ("ptb", "train online a character-level language model (Penn TreeBank or any text)"),
    ("noise", "measure how noisy each estimator is, against exact RTRL"),
    ("check", "compare every gradient method with finite differences on a backend"),
    ("plot", "draw the logs of copy, ptb and noise"),
)
PROG = "python -m minirtrl"


def main(argv=None):
    """The list of commands (status 0) with no argument or ``--help``; anything else is one
    line on stderr and status 2, a command name given after a space with the right call."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        lines = ["minirtrl: exact and approximate real-time recurrent learning", "",
                 "usage: python -m minirtrl.COMMAND [--help]", "", "commands:",
                 *(f"  {name:7s} {what}" for name, what in COMMANDS), "",
                 "and `import minirtrl` for the library (README.md)."]
        try:
            print("\n".join(lines), flush=True)
        except BrokenPipeError:  # the reader stopped early (| head): nothing more to say
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if argv[0] in dict(COMMANDS):
        import shlex  # here, not at the top: nothing is imported before ``run`` guards it

        call = " ".join([f"{PROG}.{argv[0]}", *map(shlex.quote, argv[1:])])
        print(f"{PROG}: error: a command is a module of its own: did you mean {call}?",
              file=sys.stderr)
    else:
        print(f"{PROG}: error: unknown argument {argv[0]!r}: run a command as "
              f"{PROG}.COMMAND (see {PROG} --help)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    from .drivers.entry import run

    run("minirtrl", main)
