"""Data-parallel training over real MPI: jobs in tests/mpi_jobs.py under `mpirun -n 2`."""
import importlib.util
import os
import shutil
import subprocess
import sys
import time

import pytest

from fastdl import distributed

JOBS = os.path.join(os.path.dirname(__file__), "mpi_jobs.py")
HAVE_MPI = shutil.which("mpirun") is not None and importlib.util.find_spec("mpi4py") is not None


def mpirun(job, timeout=180):
    if not HAVE_MPI:
        if os.environ.get("CI"):
            pytest.fail("CI installs Open MPI and mpi4py: the MPI tests must not skip there")
        pytest.skip("mpirun or mpi4py is not installed")
    # as root in CI, and more ranks than cores on small machines
    command = ["mpirun", "-n", "2", "--oversubscribe", "--allow-run-as-root", sys.executable, JOBS, job]
    env = {**os.environ, "OMPI_MCA_rmaps_base_oversubscribe": "1"}
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=os.path.dirname(os.path.dirname(JOBS)))
    return proc, time.perf_counter() - start


@pytest.mark.mpi
def test_two_ranks_give_the_weights_of_one_process():
    proc, _ = mpirun("equivalence")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "EQUIVALENT" in proc.stdout


@pytest.mark.mpi
def test_augmented_flow_is_sharded_and_ranks_stay_in_step():
    proc, _ = mpirun("shuffled_flow")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SHARDED" in proc.stdout


@pytest.mark.mpi
@pytest.mark.parametrize("job,message", [
    ("fault", "simulated failure on rank 1; aborting all ranks"),
    # a ValueError on one rank only, mid-training (bad labels there): not a start-up mismatch
    ("value_error_on_one_rank", "ValueError: labels must be in [0, 3)"),
])
def test_a_failing_rank_stops_the_job_quickly(job, message):
    proc, seconds = mpirun(job, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr and "aborting all ranks" in proc.stderr
    assert seconds < 60


@pytest.mark.mpi
def test_a_rank_with_an_empty_share_of_the_last_batch_still_takes_part():
    proc, seconds = mpirun("short_last_batch", timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SHORT BATCH DONE" in proc.stdout



@pytest.mark.mpi
def test_mismatched_batch_sizes_are_a_clear_error_on_every_rank():
    proc, _ = mpirun("mismatch")
    assert proc.returncode != 0
    for rank in (0, 1):
        assert f"rank {rank}: the global batch size differs between ranks (rank 0: 16; rank 1: 17)" in proc.stdout


def test_a_single_process_works_without_mpirun():
    assert distributed.rank() == 0 and distributed.size() == 1 and distributed.is_chief()


def test_missing_mpi4py_is_an_error_only_when_distribution_is_asked(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mpi4py(name, *args, **kwargs):
        if name.startswith("mpi4py"):
            raise ImportError("No module named 'mpi4py'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpi4py)
    monkeypatch.setattr(distributed, "_mpi", None)
    monkeypatch.setattr(distributed, "_comm", None)
    assert distributed.init() == (0, 1)
    with pytest.raises(RuntimeError, match="distributed training needs mpi4py"):
        distributed.init(required=True)
