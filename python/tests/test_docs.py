"""Every ```python example in docs/python.md runs (each in a fresh interpreter, in an
empty directory, inside the lab)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import REPO

DOC = REPO / "docs" / "python.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)


def test_doc_has_examples():
    assert len(BLOCKS) >= 4


@pytest.mark.usefixtures("lab")
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_doc_example_runs(index, tmp_path):
    r = subprocess.run(
        [sys.executable, "-c", BLOCKS[index]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, f"example {index} failed:\n{BLOCKS[index]}\n{r.stderr}"
