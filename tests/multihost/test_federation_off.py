"""Without HIVE_NATS_URL nothing of NATS is imported or started."""

from __future__ import annotations

import os
from pathlib import Path

from tests.e2e.hive import running_hive

TRAP = """
import os
open(os.environ["NATS_IMPORT_MARK"], "w").write("imported")
raise ImportError("nats is not to be imported without HIVE_NATS_URL")
"""


def test_a_hive_of_one_host_never_imports_nats(tmp_path: Path) -> None:
    trap = tmp_path / "trap" / "nats"
    trap.mkdir(parents=True)
    (trap / "__init__.py").write_text(TRAP)
    mark = tmp_path / "imported"
    path = os.pathsep.join(p for p in (str(trap.parent), os.environ.get("PYTHONPATH")) if p)
    with running_hive({"PYTHONPATH": path, "NATS_IMPORT_MARK": str(mark)}) as hive:
        hive.spawn_idle("solo")
        for args in (("list",), ("hosts",), ("send", "solo", "-")):
            result = hive.cli(*args, stdin="hello")
            assert result.returncode == 0, result.stderr
        assert hive.cli("hosts").stdout.startswith("this hive runs on one host")
        elsewhere = hive.cli("spawn", "far", "--host", "beta")
        assert elsewhere.returncode == 1
        assert "host: this hive runs on one host" in elsewhere.stderr
    assert not mark.exists()
    assert "NATS" not in hive.log()
