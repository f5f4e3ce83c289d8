"""``probekit record`` under torch.distributed: 2 processes on gloo (CPU) against a single-process recording.

The checkpoints are shared round-robin between the ranks, each rank stages its own, rank 0
writes the trajectory; every checkpoint is computed exactly as in one process (same batches,
one thread), so the files must be byte-identical.
"""
from __future__ import annotations

import json
import os

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from record_runs import mlp_run  # noqa: E402


def _options(root, **more):
    return dict(loss="classification", model_factory=f"{root / 'mymodels.py'}:build", input_field=["x1", "x2", "x3"],
                target_field="y", id_field="id", batch_size=16, name="run",
                order_parameters=[f"accuracy:eval={root / 'eval.jsonl'}"], **more)


def _worker(rank, world, init_file, root, out, fail_rank):
    import probekit.record.sources as sources
    from probekit.record import record_run

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    result = {"rank": rank, "loaded": []}
    real = sources.load_model
    try:
        def counted(path, loader):
            if rank == fail_rank:
                raise RuntimeError("this rank's disk went away")
            result["loaded"].append(int(path.stem.split("-")[1]))
            return real(path, loader)
        sources.load_model = counted
        try:
            outcome = record_run(root / "ckpt", root / "pool.jsonl", out, **_options(root))
            result.update(computed=outcome.computed, path=str(outcome.trajectory.path))
        except Exception as exc:  # noqa: BLE001 - reported to the test
            result["error"] = f"{type(exc).__name__}: {exc}"
        dist.barrier()
    finally:
        dist.destroy_process_group()
    with open(os.path.join(init_file + f".rank{rank}.json"), "w") as fh:
        json.dump(result, fh)


def _distributed(tmp_path, root, out, fail_rank=None, world=2, timeout=180):
    from spawn_ranks import spawn_ranks

    init = str(tmp_path / f"init-{out.name}")
    spawn_ranks(_worker, (world, init, root, out, fail_rank), world, timeout, "distributed recording")
    return [json.loads(open(f"{init}.rank{r}.json").read()) for r in range(world)]


def test_two_ranks_on_gloo_record_what_one_process_records(tmp_path, one_torch_thread):
    from probekit.record import record

    root = tmp_path / "mlp"
    mlp_run(root)
    rank0, rank1 = _distributed(tmp_path, root, tmp_path / "two")
    assert "error" not in rank0 and "error" not in rank1, (rank0, rank1)
    assert (rank0["computed"], rank1["computed"]) == (10, 10)  # counted over both ranks
    assert (rank0["loaded"], rank1["loaded"]) == ([0, 200, 400, 600, 800], [100, 300, 500, 700, 900])  # round-robin
    assert rank0["path"] == rank1["path"] == str(tmp_path / "two")
    single = record(root / "ckpt", root / "pool.jsonl", tmp_path / "one", **_options(root))
    for name in ("losses.npy", "steps.npy", "series.npz"):
        assert (tmp_path / "two" / name).read_bytes() == (single.path / name).read_bytes(), name
    two, one = (json.loads((p / "manifest.json").read_text()) for p in (tmp_path / "two", single.path))
    for m in (two, one):
        del m["wall_seconds"], m["content_hash"]
    assert two == one
    assert not (tmp_path / "two.partial").exists()


def test_a_failure_on_one_rank_stops_both_and_keeps_the_other_ranks_losses(tmp_path, one_torch_thread):
    root = tmp_path / "mlp"
    mlp_run(root)
    rank0, rank1 = _distributed(tmp_path, root, tmp_path / "t", fail_rank=1)
    assert "this rank's disk went away" in rank1["error"]
    assert "another rank's recording failed" in rank0["error"]
    assert not (tmp_path / "t").exists()
    assert len(list((tmp_path / "t.partial").glob("*.npz"))) == 5  # rank 0's share, kept for the rerun
