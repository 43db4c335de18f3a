"""Every example decodes and passes admission, so the README's walk-through can't rot."""

from __future__ import annotations

from pathlib import Path

import pytest

from dora.api import codec, kinds
from dora.apiserver import admission

EXAMPLES = sorted((Path(__file__).parent.parent.parent / "examples").glob("*.yaml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid(path: Path) -> None:
    objects = codec.decode_yaml(path.read_text(), source=path.name)
    assert objects
    for obj in objects:
        kind = kinds.get(obj.kind)
        if kind.zoned and not obj.metadata.zone:
            obj.metadata.zone = "default"
        if kind.workspaced and not obj.metadata.workspace:
            obj.metadata.workspace = "default"
        admission.apply_defaults(obj)
        admission.validate(obj)
