"""The README's "Using the API" example, run as written against a real apiserver, the
real controllers and a simulated agent (the node ``local``, as ``make up`` names
it): the example reads doractl's profile through ``$DORA_CONFIG``, as a user's
script reads ``~/.dora/config.yaml``."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from dora.api.client import Client
from tests.integration.controllers_harness import Controllers, SimNode, TaskGroup, group
from tests.integration.test_ctl_support import LIMIT, ROOT
from tests.integration.test_sdk import profile

pytestmark = pytest.mark.usefixtures("default_scope")
__all__ = ["group", "profile"]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Using the API\n"):]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "no python block in README's Using the API"
    return match.group(1)


async def test_the_readme_example_runs(client: Client, group: TaskGroup,
                                       profile: Path) -> None:
    await SimNode(client, "local").start(group)
    Controllers(client).start(group)
    code = readme_example()
    assert "/root" not in code and ":3000" not in code
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=ROOT, env=dict(os.environ),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), LIMIT * 2)
    assert process.returncode == 0, err.decode()
    assert out.decode().splitlines() == [
        "workload/hello created",
        "hello.0 Running",
        "hello 1",
        "hello.1 local",
        "ADDED hello.0",
        "[]",
    ]
