"""``python -m minirtrl``: the commands, one line each."""

import sys

COMMANDS = (
    ("copy", "train online on the copy task with a curriculum (string memorisation)"),
    ("ptb", "train online a character-level language model (Penn TreeBank or any text)"),
    ("noise", "measure how noisy each estimator is, against exact RTRL"),
    ("check", "compare every gradient method with finite differences on a backend"),
    ("plot", "draw the logs of copy, ptb and noise"),
)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    print("minirtrl: exact and approximate real-time recurrent learning\n\n"
          "usage: python -m minirtrl.COMMAND [--help]\n\ncommands:")
    for name, what in COMMANDS:
        print(f"  {name:7s} {what}")
    print("\nand `import minirtrl` for the library (README.md).")
    return 0 if not argv or argv[0] in ("-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
