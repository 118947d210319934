"""The README's "Cross-check your implementation" guide runs as written: every ```python block
of that section, in order, in one namespace (each block asserts what it shows)."""

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"
SECTION = "## Cross-check your implementation"


def guide_blocks():
    text = README.read_text(encoding="utf-8")
    assert text.count(SECTION) == 1
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```python\n(.*?)^```", section, flags=re.S | re.M)


def test_guide_examples_run_in_order(capsys):
    blocks = guide_blocks()
    assert len(blocks) == 4  # (a) exact, (b) same signs and a given start, (c) statistics
    namespace = {"__name__": "readme_guide"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md: guide block {i + 1}", "exec"), namespace)
    out = capsys.readouterr().out
    assert "{'W1': (2, 1, 2)}" in out
    assert "largest difference of the KF-RTRL influence over 10 steps" in out
    assert "UORO: largest |z|" in out and "KF-RTRL with skewed signs" in out
    assert namespace["worst"] < 1e-12 and namespace["z"] < namespace["z_skewed"]
