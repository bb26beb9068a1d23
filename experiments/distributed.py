"""Multi-process (multi-host) start-up: ``jax.distributed.initialize`` from the launch environment.

Every entry point (``python -m experiments.train``, ``python -m experiments.compare``) calls
``initialize_from_env()`` first, before anything touches a JAX device. It reads:

=======================================================  =========================================
environment                                              what happens
=======================================================  =========================================
none of the variables below                              nothing: one process, every local device
``JAX_COORDINATOR_ADDRESS`` (or ``COORDINATOR_ADDRESS``)  ``jax.distributed.initialize(address,
``JAX_NUM_PROCESSES`` (or ``NUM_PROCESSES``)              num_processes, process_id)``; all three
``JAX_PROCESS_ID`` (or ``PROCESS_ID``)                    are required once one is set
``JAX_DISTRIBUTED=auto``                                  ``jax.distributed.initialize()`` with no
                                                         arguments: JAX detects Cloud TPU pod
                                                         slices, Slurm, Open MPI, Kubernetes
=======================================================  =========================================

JAX itself (0.10) reads ``JAX_COORDINATOR_ADDRESS`` (and ``JAX_LOCAL_DEVICE_IDS``,
``JAX_COORDINATOR_PORT``) but not the process count and id, which it only takes from arguments or a
detected cluster; hence this module. ``JAX_DISTRIBUTED_TIMEOUT`` (seconds, default 300) bounds the
wait for the other processes to connect.

On CPU the cross-process collectives need an implementation: ``gloo`` is selected unless one was
chosen already (``JAX_CPU_COLLECTIVES_IMPLEMENTATION``); it is harmless on GPU and TPU hosts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import jax

logger = logging.getLogger(__name__)

#: (canonical name, accepted alternative) of the three explicit variables.
ADDRESS_VARS = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")
NUM_PROCESSES_VARS = ("JAX_NUM_PROCESSES", "NUM_PROCESSES")
PROCESS_ID_VARS = ("JAX_PROCESS_ID", "PROCESS_ID")
AUTO_VAR = "JAX_DISTRIBUTED"
TIMEOUT_VAR = "JAX_DISTRIBUTED_TIMEOUT"


def _first(environ: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = environ.get(name)
        if value not in (None, ""):
            return value
    return None


def _int(environ: Mapping[str, str], names: tuple[str, ...]) -> int:
    value = _first(environ, names)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{names[0]}: expected an int, got {value!r}.") from None


def distributed_args(environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The ``jax.distributed.initialize`` keyword arguments the environment asks for.

    Args:
      environ: the environment (default ``os.environ``).

    Returns:
      None for a single-process launch; ``{}`` for ``JAX_DISTRIBUTED=auto`` (cluster detection);
      otherwise ``{"coordinator_address", "num_processes", "process_id",
      "initialization_timeout"}``.

    Raises:
      ValueError: a partial or inconsistent set of variables, naming what is missing or wrong.
    """
    environ = os.environ if environ is None else environ
    groups = (ADDRESS_VARS, NUM_PROCESSES_VARS, PROCESS_ID_VARS)
    present = [names for names in groups if _first(environ, names) is not None]
    auto = environ.get(AUTO_VAR, "").strip().lower()
    if auto not in ("", "0", "false", "no", "auto"):
        raise ValueError(f"{AUTO_VAR}: expected 'auto' (or unset), got {environ[AUTO_VAR]!r}.")
    timeout = _int(environ, (TIMEOUT_VAR,)) if environ.get(TIMEOUT_VAR) else 300
    if timeout <= 0:
        raise ValueError(f"{TIMEOUT_VAR}: expected seconds > 0, got {timeout}.")
    if not present:
        return {"initialization_timeout": timeout} if auto == "auto" else None
    missing = [names[0] for names in groups if names not in present]
    if missing:
        raise ValueError(
            f"multi-process launch: {', '.join(missing)} must be set along with "
            f"{', '.join(names[0] for names in present)} (coordinator address 'host:port', "
            "process count, this process's id in 0..count-1)."
        )
    address = _first(environ, ADDRESS_VARS)
    if ":" not in address:
        raise ValueError(f"{ADDRESS_VARS[0]}: expected 'host:port', got {address!r}.")
    num_processes = _int(environ, NUM_PROCESSES_VARS)
    process_id = _int(environ, PROCESS_ID_VARS)
    if num_processes < 1:
        raise ValueError(f"{NUM_PROCESSES_VARS[0]}: expected an int >= 1, got {num_processes}.")
    if not 0 <= process_id < num_processes:
        raise ValueError(
            f"{PROCESS_ID_VARS[0]}: expected 0 <= id < {num_processes} "
            f"({NUM_PROCESSES_VARS[0]}), got {process_id}."
        )
    return {
        "coordinator_address": address,
        "num_processes": num_processes,
        "process_id": process_id,
        "initialization_timeout": timeout,
    }


def initialize_from_env(environ: Mapping[str, str] | None = None) -> bool:
    """Calls ``jax.distributed.initialize`` when the environment describes a multi-process launch.

    Call it first thing in a program, before any JAX computation or device query. Calling it
    again (or after a manual ``jax.distributed.initialize``) does nothing.

    Returns:
      True when JAX runs distributed (initialised now or before), False for a single process.

    Raises:
      ValueError: a partial or inconsistent environment (see ``distributed_args``).
      RuntimeError: the JAX backend was already initialised (a device was used too early).
    """
    kwargs = distributed_args(environ)
    if jax.distributed.is_initialized():
        return True
    if kwargs is None:
        return False
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    logger.info(
        "jax.distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return True
