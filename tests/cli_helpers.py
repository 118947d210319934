"""What the command-line tests share: a refusal is exactly one line on stderr, no traceback."""


def one_error_line(capsys, *needles):
    """The one stderr line captured so far; asserts it is the only one and holds every needle."""
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
