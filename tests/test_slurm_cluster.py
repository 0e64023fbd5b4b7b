"""scripts/slurm-cluster.sh never reports "up" for a cluster that is not its own: a port another process holds
is named, a second cluster beside a running one takes free ports and answers on them, and `status` of a
stopped cluster fails even while another cluster on the machine is up."""

from __future__ import annotations

import os
import re
import socket
import subprocess

import pytest
from test_slurm import CLUSTER, slurm_conf  # noqa: F401  (the fixture: the cluster CI started)

pytestmark = [pytest.mark.slurm]


def cluster(command: str, state_dir, **knobs):
    env = {**os.environ, "PARC_SLURM_DIR": str(state_dir), "PARC_SLURM_ACCOUNTING": "0", **knobs}
    return subprocess.run([str(CLUSTER), command], env=env, capture_output=True, text=True, timeout=300)


def ports(state_dir) -> dict:
    return dict(line.split("=") for line in (state_dir / "etc" / "ports").read_text().split())


def test_a_port_held_by_another_process_is_named_and_nothing_starts(slurm_conf, tmp_path):  # noqa: F811
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        result = cluster("start", tmp_path / "c", PARC_SLURM_CTLD_PORT=str(port))
    finally:
        holder.close()
    assert result.returncode != 0 and result.stdout == ""
    assert f"port {port} for slurmctld is taken by python" in result.stderr, result.stderr[-2000:]
    assert not list((tmp_path / "c").glob("run/*.pid"))


def test_a_second_cluster_beside_a_running_one_is_its_own(slurm_conf, tmp_path):  # noqa: F811
    first_port = int(re.search(r"SlurmctldPort=(\d+)", open(slurm_conf).read()).group(1))
    second = tmp_path / "second"
    try:
        started = cluster("start", second)
        assert started.returncode == 0, started.stderr[-3000:]
        conf = re.search(r"export SLURM_CONF=(\S+)", started.stdout).group(1)
        assert int(ports(second)["CTLD_PORT"]) != first_port  # the running cluster holds its port
        assert f"port {first_port} for slurmctld is taken by slurmctld" in started.stderr
        ping = subprocess.run(
            ["scontrol", "ping"], env={**os.environ, "SLURM_CONF": conf}, capture_output=True, text=True
        )
        assert "is UP" in ping.stdout
        assert cluster("status", second).returncode == 0
    finally:
        cluster("stop", second)
    stopped = cluster("status", second)
    assert stopped.returncode != 0 and stopped.stdout == ""  # its own daemons are gone: not "up"
    assert (
        subprocess.run(
            [str(CLUSTER), "status"], env={**os.environ, "SLURM_CONF": slurm_conf}, capture_output=True
        ).returncode
        == 0
    )  # the first one is untouched
