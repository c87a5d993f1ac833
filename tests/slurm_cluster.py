"""Start and stop a single-node SLURM (munge, slurmctld, slurmd) from Debian's packages, for tests.

Needs root and the packages slurm-wlm and munge (`make sysdeps` installs them). The config goes to
the default path /etc/slurm/slurm.conf, because jobs' own srun does not see a SLURM_CONF variable;
an existing file is backed up and restored. Daemons are started in the foreground (-D) as children
so that they are stopped by pid.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = Path("/etc/slurm/gres.conf")
# two GPUs as a generic resource without device files: the node accepts `--gpus=1` jobs (the executor
# plugin's translation of a rule's gpu=1), which then run on the CPU; enough to test the request path
FAKE_GPU_FILES = ("/dev/null", "/dev/zero")  # gres/gpu needs a device file per GPU; any character device does
FAKE_GPUS = len(FAKE_GPU_FILES)


def unavailable_reason() -> str | None:
    """Why a local SLURM cannot be started here, or None."""
    if os.geteuid() != 0:
        return "needs root to write /etc/slurm/slurm.conf and start slurmctld/slurmd"
    for exe in ("slurmctld", "slurmd", "munged", "sbatch", "squeue"):
        if shutil.which(exe) is None:
            return f"{exe} not installed (apt-get install slurm-wlm munge, or `make sysdeps`)"
    if subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0:
        return "a slurmctld is already running on this machine"
    return None


def slurm_conf(host: str, logdir: Path) -> str:
    return f"""ClusterName=bioprune-test
SlurmctldHost={host}
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
StateSaveLocation={logdir}/state
SlurmdSpoolDir={logdir}/spool
SlurmctldPidFile={logdir}/slurmctld.pid
SlurmdPidFile={logdir}/slurmd.pid
SlurmctldLogFile={logdir}/slurmctld.log
SlurmdLogFile={logdir}/slurmd.log
GresTypes=gpu
MinJobAge=3600
NodeName={host} CPUs=16 RealMemory=64000 Gres=gpu:{FAKE_GPUS} State=UNKNOWN
PartitionName=main Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
PartitionName=gpu Nodes={host} MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
"""


class LocalSlurm:
    """Context manager: a running single-node SLURM with partitions `main` (default) and `gpu`."""

    def __init__(self, workdir: Path):
        self.dir = workdir
        self.procs: list[subprocess.Popen] = []
        self.backup: bytes | None = None

    def __enter__(self) -> "LocalSlurm":
        host = socket.gethostname().split(".")[0]
        for d in ("state", "spool"):
            (self.dir / d).mkdir(parents=True, exist_ok=True)
        if CONF.exists():
            self.backup = CONF.read_bytes()
        CONF.parent.mkdir(parents=True, exist_ok=True)
        CONF.write_text(slurm_conf(host, self.dir))
        self.gres_backup = GRES_CONF.read_bytes() if GRES_CONF.exists() else None
        GRES_CONF.write_text("".join(f"NodeName={host} Name=gpu File={dev}\n" for dev in FAKE_GPU_FILES))
        self._start_munge()
        self.procs.append(subprocess.Popen(["slurmctld", "-D", "-i"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        time.sleep(1)
        self.procs.append(subprocess.Popen(["slurmd", "-D"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        self._wait_idle()
        return self

    def _start_munge(self) -> None:
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["mungekey", "--create", "--force"], check=True)
            shutil.chown(key, "munge", "munge")
            key.chmod(0o400)
        for d in ("/run/munge", "/var/lib/munge", "/var/log/munge"):
            Path(d).mkdir(parents=True, exist_ok=True)
            shutil.chown(d, "munge", "munge")
        if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
            self.procs.append(subprocess.Popen(["runuser", "-u", "munge", "--", "munged", "-F"],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
            time.sleep(1)

    def _wait_idle(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        state = ""
        while time.time() < deadline:
            r = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
            state = r.stdout.strip()
            if "idle" in state or "mix" in state:
                return
            time.sleep(1)
        self.__exit__(None, None, None)
        log = (self.dir / "slurmctld.log").read_text()[-2000:] if (self.dir / "slurmctld.log").exists() else ""
        raise RuntimeError(f"SLURM node did not become idle (sinfo: {state!r})\n{log}")

    def jobs(self) -> list[dict[str, str]]:
        """Every job the controller still knows (MinJobAge keeps finished ones for an hour), as key=value dicts."""
        out = subprocess.run(["scontrol", "-o", "show", "job"], capture_output=True, text=True).stdout
        return [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in out.splitlines() if line.strip()]

    def __exit__(self, *exc) -> None:
        subprocess.run(["scancel", "--full", "--user", "root"], capture_output=True)
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs = []
        if self.backup is not None:
            CONF.write_bytes(self.backup)
        elif CONF.exists():
            CONF.unlink()
        if getattr(self, "gres_backup", None) is not None:
            GRES_CONF.write_bytes(self.gres_backup)
        elif GRES_CONF.exists():
            GRES_CONF.unlink()
