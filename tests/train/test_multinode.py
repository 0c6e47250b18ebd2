"""torchrun across two "hosts" (docs/multinode.md): two launchers of one process each meet at a
c10d rendezvous on loopback. Each node has its own directory, as two machines without a shared
file system would: its own copy of the inputs and its own --out."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).parent / "torchrun"
TIMEOUT_S = 180


@dataclass(frozen=True)
class TwoNodes:
    returncodes: list[int]
    logs: str  # both nodes' stdout and stderr tails, for assertion messages
    main: int  # the node whose process got global rank 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, chars: int = 2500) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def launch_two_nodes(nodes: list[Path], args: Callable[[Path], list[str]]) -> TwoNodes:
    """``torchrun --nnodes 2 --nproc-per-node 1`` once per node directory, in order, each
    running ``args(node)`` with the node's directory as its working directory."""
    endpoint, run_id = f"127.0.0.1:{free_port()}", uuid.uuid4().hex
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "GLOO_SOCKET_IFNAME": "lo",  # on real hosts: the interface that reaches the others
    }
    procs = []
    for node in nodes:
        with (node / "stdout.txt").open("w") as out, (node / "stderr.txt").open("w") as err:
            command = [
                str(TORCHRUN), "--nnodes", "2", "--nproc-per-node", "1",
                "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", run_id,
                "--local-addr", "127.0.0.1",  # what the other nodes dial to reach this one
                *args(node),
            ]  # fmt: skip
            procs.append(
                subprocess.Popen(
                    command, cwd=node, env=env, stdout=out, stderr=err, start_new_session=True
                )
            )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        codes = [p.wait(timeout=max(1.0, deadline - time.monotonic())) for p in procs]
    except subprocess.TimeoutExpired:
        codes = [-1, -1]  # timed out
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()  # torchrun stops its worker (in a session of its own) on SIGTERM
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    logs = "\n".join(
        f"--- node {i} {name} ---\n{_tail(node / name)}"
        for i, node in enumerate(nodes)
        for name in ("stdout.txt", "stderr.txt")
    )
    # c10d ignores --node-rank: it numbers the nodes by --local-addr (or host name) as text,
    # then by launcher PID, which is all that tells these two apart.
    main = min(range(len(procs)), key=lambda i: procs[i].pid)
    return TwoNodes(codes, logs, main)


def node_dirs(root: Path) -> list[Path]:
    nodes = [root / "node0", root / "node1"]
    for node in nodes:
        node.mkdir()
    return nodes


def test_gradients_across_two_nodes_equal_one_process(tmp_path: Path) -> None:
    """ddp_check.py: each node encodes half of an 8-sample batch; the DDP-averaged gradient
    equals one process's gradient on the whole batch. Then a pretraining run on the two
    nodes, stopped after its first step and resumed from rank 0's last.pt alone."""
    nodes = node_dirs(tmp_path)
    run = launch_two_nodes(nodes, lambda node: [str(ROOT / "tests/train/ddp_check.py"), str(node)])
    assert run.returncodes == [0, 0], run.logs
    main, other = nodes[run.main], nodes[1 - run.main]
    result = json.loads((main / "result.json").read_text())
    assert abs(result["loss"] - result["reference_loss"]) < 1e-6
    assert result["max_grad_diff"] < 1e-5
    # batch size 4 per process, 2 processes: each step covers 8 samples of the train split
    steps = 2 * -(-result["n_train"] // 8)
    assert result["steps"] == steps and result["resumed_steps"] == list(range(2, steps + 1))
    assert (main / "run" / "checkpoints" / "best.pt").exists()
    assert not (other / "result.json").exists() and not (other / "run").exists(), run.logs


def train(*extra: str) -> Callable[[Path], list[str]]:
    """``aam train`` on the node's own copy of the study, into the node's own ``out``."""
    return lambda node: [
        "-m", "aam_core.cli", "train", "--table", "data/table.biom",
        "--metadata", "data/metadata.tsv", "--target", "age", "--task", "regression",
        "--out", "out", "--preset", "tiny", "--epochs", "2", "--batch-size", "8",
        "--rarefaction-depth", "1500", "--token-limit", "32", "--device", "cpu",
        "--no-baseline", "--quiet", *extra,
    ]  # fmt: skip


def write_data(node: Path, seed: int = 4) -> None:
    from aam_core.data.synthetic import SyntheticSpec, generate, write_study

    write_study(
        generate(SyntheticSpec(n_samples=40, n_asvs=60, asvs_per_sample=12, seed=seed)),
        node / "data",
    )


def test_cli_train_across_two_nodes_writes_on_rank_0_only(tmp_path: Path) -> None:
    """``aam train`` with each node's own copy of the data: rank 0's --out gets every output,
    the other node's --out is never created, and only rank 0 writes the events file."""
    nodes = node_dirs(tmp_path)
    write_data(nodes[0])
    shutil.copytree(nodes[0] / "data", nodes[1] / "data")  # each host its own copy
    run = launch_two_nodes(nodes, train("--events", "events.jsonl"))
    assert run.returncodes == [0, 0], run.logs
    main, other = nodes[run.main], nodes[1 - run.main]
    steps = [
        e["step"]
        for e in map(json.loads, (main / "events.jsonl").read_text().splitlines())
        if e["type"] == "step"
    ]
    assert steps == [1, 2, 3, 4], run.logs  # 32 train samples, 2 x 8 a step: 2 steps an epoch
    history = (main / "out" / "metrics.jsonl").read_text().splitlines()
    # epoch 0: the linear base alone, validated before the first step
    assert sorted({json.loads(line)["epoch"] for line in history}) == [0, 1, 2]
    predictions = (main / "out" / "validation_predictions.tsv").read_text().splitlines()[1:]
    assert len(predictions) == 8
    assert {p.name for p in (main / "out" / "checkpoints").iterdir()} == {"best.pt", "last.pt"}
    assert not (other / "out").exists() and not (other / "events.jsonl").exists(), run.logs


def test_cli_refusals_stop_both_nodes(tmp_path: Path) -> None:
    """An input missing on one host ends the run on both at once, not at a timeout. Input
    files that differ between hosts end it with the same message on both; --resume there
    needs last.pt on rank 0's host only."""
    nodes = node_dirs(tmp_path)
    write_data(nodes[0])
    write_data(nodes[1], seed=5)  # another host, another table
    metadata = nodes[1] / "data" / "metadata.tsv"
    metadata.unlink()  # and first no metadata at all
    started = time.monotonic()
    run = launch_two_nodes(nodes, train())
    assert run.returncodes == [1, 1], run.logs  # torchrun's status when its worker fails
    assert time.monotonic() - started < TIMEOUT_S / 2, run.logs  # not left waiting
    assert "(exitcode: 2)" in (nodes[1] / "stderr.txt").read_text(), run.logs
    assert "metadata.tsv" in (nodes[1] / "stderr.txt").read_text(), run.logs

    shutil.copy(nodes[0] / "data" / "metadata.tsv", metadata)
    (nodes[run.main] / "out" / "checkpoints").mkdir(parents=True)
    (nodes[run.main] / "out" / "checkpoints" / "last.pt").touch()  # only on rank 0's host
    rank_0 = run.main
    run = launch_two_nodes(nodes, train("--resume"))
    assert run.returncodes == [1, 1], run.logs
    assert run.main == rank_0, "c10d put rank 0 on the other node (PID wrap-around)"
    for node in nodes:
        stderr = (node / "stderr.txt").read_text()
        assert "(exitcode: 2)" in stderr, run.logs  # the worker's: a user error, no crash
        assert "these differ from rank 0: rank 1: file table\n" in stderr, run.logs
