"""Global-batch losses (axis_name) on 8 virtual devices equal the single-device ones."""

import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_global_batch_losses_match_single_device():
    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
    )
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "multidevice_checks.py")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert "multidevice checks passed" in result.stdout
