"""The GPU check: what only a GPU machine can show, in one run that writes one JSON.

Run on a borrowed GPU machine (scripts/gpu_check.sh installs the wheelhouse first; DEVELOPERS
notes in README "The GPU check"); `--dry-run` runs the same sequence on the CPU here, so the
script cannot rot while no GPU is lent (tests/test_gpu_check.py runs it).

Steps, each recorded with ok / seconds / what it measured, the JSON rewritten after each (a
machine that goes away mid-run still leaves the steps done):
  doctor      mmcv's CUDA ops (nms, roi_align) on the GPU, CUDA versions, the GPU's arch
  kill        a 1-GPU trial of 2 epochs whose worker is killed in epoch 2: it resumes at 2
  share       a 2-trial search on one GPU (--gpus-per-worker 0.5, --max-concurrent 2) with the
              LR-step probe scheduler: both trials end, none errored, memory capped per trial
  amp         one trial with AmpOptimWrapper (mixed precision)
  probe       the probe's restore on the device: a probed run's weights against an unprobed
              run's (bitwise on CPU; on GPU atomic kernels allow a small relative difference)
  bench       bench/overhead.py: raytune_ft's iterations/s against plain mmengine, same device
and after each trial the GPU memory in use (nothing may stay held once a trial ended).

    python scripts/gpu_check.py --out gpu_check.json [--dry-run] [--only kill,share]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # helpers: the tiny COCO set and config

STEPS = ("doctor", "kill", "share", "amp", "probe", "bench")
NEEDED = ("torch", "ray", "mmcv", "mmcv.ops", "mmengine", "mmdet", "optuna", "pycocotools",
          "tensorboardX")
# The probe's contract on a GPU: the run after a probe equals the run without one up to what
# non-deterministic (atomic) CUDA kernels change between two identical runs.
GPU_PROBE_TOLERANCE = 1e-3


def missing_packages() -> list[str]:
    missing = []
    for name in NEEDED:
        try:
            importlib.import_module(name)
        except Exception as err:  # noqa: BLE001 - ImportError or a broken native library
            missing.append(f"{name} ({type(err).__name__}: {str(err).splitlines()[0][:120]})")
    return missing


def gpu_memory_used_mib() -> float | None:
    """Memory in use on GPU 0 by every process (nvidia-smi), None without a GPU."""
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,"
                              "nounits", "-i", "0"], capture_output=True, text=True, timeout=30)
        return float(out.stdout.strip().splitlines()[0])
    except Exception:  # noqa: BLE001 - no driver, no GPU
        return None


class Check:
    """Runs the steps and keeps the JSON current."""

    def __init__(self, out: Path, dry_run: bool, workdir: Path) -> None:
        self.out, self.dry_run, self.workdir = out, dry_run, workdir
        self.gpus = 0.0 if dry_run else 1.0
        self.report: dict = {"dry_run": dry_run, "python": platform.python_version(),
                             "workdir": str(workdir),  # removed at the end when all passed
                             "started_at": time.time(), "steps": {}, "memory_mib": {}}
        self.write()

    def write(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(self.report, indent=2, default=str))

    def step(self, name: str, fn) -> None:
        print(f"[gpu_check] {name} ...", flush=True)
        started = time.time()
        try:
            result = fn() or {}
            entry = {"ok": bool(result.pop("ok", True)), **result}
        except Exception as err:  # noqa: BLE001 - a failed step is a finding; go on
            entry = {"ok": False, "error": f"{type(err).__name__}: {err}",
                     "traceback": traceback.format_exc()[-3000:]}
        entry["seconds"] = round(time.time() - started, 1)
        self.report["steps"][name] = entry
        self.report["memory_mib"][f"after_{name}"] = gpu_memory_used_mib()
        self.write()
        print(f"[gpu_check] {name}: {'ok' if entry['ok'] else 'FAILED'} "
              f"({entry['seconds']}s) {json.dumps({k: v for k, v in entry.items() if k not in ('traceback',)}, default=str)[:400]}",
              flush=True)

    # -- fixtures -----------------------------------------------------------------------------
    def tiny(self, name: str, max_epochs: int, extra: str = "") -> Path:
        from helpers import write_tiny_config

        return write_tiny_config(self.workdir / f"{name}.py", self.data, str(self.pretrained),
                                 max_epochs=max_epochs, extra=extra)

    def make_fixtures(self) -> None:
        import torch
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
        from mmengine.config import Config

        from helpers import write_tiny_coco, write_tiny_config

        register_all_modules()
        self.data = write_tiny_coco(self.workdir / "tiny_coco")
        cfg = Config.fromfile(str(write_tiny_config(self.workdir / "coco80.py", self.data)))
        cfg.model.roi_head.bbox_head.num_classes = 80
        torch.manual_seed(1)
        self.pretrained = self.workdir / "coco80_tiny.pth"
        torch.save({"state_dict": MODELS.build(cfg.model).state_dict(),
                    "meta": {"epoch": 12, "iter": 90000}}, self.pretrained)

    # -- steps --------------------------------------------------------------------------------
    def doctor(self) -> dict:
        import torch

        from raytune_ft.cli.doctor import check_cuda, check_stack

        versions, findings = check_stack()
        cuda = [f.__dict__ for f in check_cuda()]
        info = {"versions": versions, "findings": [f.__dict__ for f in findings],
                "cuda_findings": cuda, "cuda": torch.version.cuda}
        if torch.cuda.is_available():
            info["device"] = torch.cuda.get_device_name(0)
            info["capability"] = torch.cuda.get_device_capability(0)
            info["torch_arch_list"] = torch.cuda.get_arch_list()
        ok = all(f["ok"] for f in info["findings"]) and (self.dry_run or (cuda and all(
            f["ok"] for f in cuda)))
        return {"ok": ok, **info}

    def kill(self) -> dict:
        from helpers import RANK_AUDIT, with_testing_hooks

        from raytune_ft.engine.trial import TrialResources, TrialSpec, run_trial
        from raytune_ft.mmconfig.config import load_config
        from raytune_ft.storage import Storage, read_records

        marker = self.workdir / "killed.txt"
        cfg = self.tiny("kill", 2, with_testing_hooks(
            RANK_AUDIT, f"dict(type='FaultInjectionHook', rank=0, epoch=2, at_iter=1, "
                        f"marker={str(marker)!r})"))
        spec = TrialSpec(name="kill", storage_path=str(self.workdir / "runs"),
                         resources=TrialResources(1, 2, self.gpus), max_failures=1)
        result = run_trial(load_config(str(cfg)), spec, announce=False)
        records = read_records(Storage.resolve(spec.record_dir()))
        audit = [json.loads(x) for x in (Path(spec.run_dir) / "mmengine" / "ranks" /
                                         "rank0.jsonl").read_text().splitlines()]
        epochs = [r["epoch"] for r in records]
        resumed = [r["start_epoch"] for r in records if r.get("resumed")]
        devices = sorted({a["device"] for a in audit})
        want = "cpu" if self.dry_run else "cuda:0"
        return {"ok": result.error is None and marker.exists() and epochs == [1, 2]
                and resumed == [2] and devices == [want],
                "epochs": epochs, "resumed_at": resumed, "devices": devices,
                "cuda_visible_devices": sorted({str(a["cuda_visible_devices"]) for a in audit})}

    def share(self) -> dict:
        from raytune_ft.options import SearchConfig
        from raytune_ft.pipeline.search import run_search

        space = self.workdir / "space.yaml"
        space.write_text("params:\n  lr: {type: loguniform, low: 1.0e-3, high: 2.0e-2}\n")
        result = run_search(SearchConfig(
            config=str(self.tiny("share", 3)), space=str(space), num_samples=2,
            max_concurrent=2, gpus_per_worker=0.5 if not self.dry_run else 0.0,
            cpus_per_worker=1, scheduler="step-probe", grace=0.34,
            storage_path=str(self.workdir / "exp"), name="share"))
        statuses = [r.status for r in result.rows]
        return {"ok": result.status == "finished" and len(statuses) == 2
                and "errored" not in statuses, "statuses": statuses,
                "device_seconds": [round(r.device_seconds, 1) for r in result.rows],
                "wait_seconds": [round(r.wait_seconds, 1) for r in result.rows],
                "by_status": result.summary.by_status if result.summary else None}

    def amp(self) -> dict:
        from raytune_ft.engine.trial import TrialResources, TrialSpec, run_trial
        from raytune_ft.mmconfig.config import load_config
        from raytune_ft.storage import Storage, read_records

        wrapper = "OptimWrapper" if self.dry_run else "AmpOptimWrapper"  # AMP needs a GPU
        cfg = self.tiny("amp", 1, f"optim_wrapper = dict(type='{wrapper}')\n")
        spec = TrialSpec(name="amp", storage_path=str(self.workdir / "runs"),
                         resources=TrialResources(1, 2, self.gpus), max_failures=0)
        result = run_trial(load_config(str(cfg)), spec, announce=False)
        records = read_records(Storage.resolve(spec.record_dir()))
        loss = records[-1].get("train_loss") if records else None
        return {"ok": result.error is None and len(records) == 1 and loss is not None
                and loss == loss, "optim_wrapper": wrapper, "train_loss": loss,
                "stood_in": self.dry_run}

    def probe(self) -> dict:
        """The probed run's weights against the plain run's, on this device."""
        import torch
        from mmengine.runner import Runner

        import raytune_ft.engine.probe  # noqa: F401  (registers StepProbeHook)
        from raytune_ft.mmconfig.config import load_config
        from raytune_ft.testing import param_digest

        def train(name: str, probe: bool) -> float:
            cfg = load_config(str(self.tiny("probe", 3)))
            cfg.work_dir = str(self.workdir / name)
            cfg.experiment_name = name
            cfg.randomness = dict(seed=0, deterministic=True)
            cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=100)
            cfg.custom_hooks = [dict(type="StepProbeHook", epochs=[1, 2], epoch_fraction=0.5,
                                     gamma=0.1)] if probe else []
            runner = Runner.from_cfg(cfg)
            runner.train()
            return param_digest(runner.model)

        plain, probed = train("plain", False), train("probed", True)
        rel = abs(probed - plain) / max(abs(plain), 1e-12)
        floor, tolerance = 0.0, 0.0  # the CPU kernels are deterministic: bitwise
        if torch.cuda.is_available():  # the noise floor of two identical runs on this GPU
            again = train("plain_again", False)
            floor = abs(again - plain) / max(abs(plain), 1e-12)
            tolerance = GPU_PROBE_TOLERANCE
        return {"ok": rel <= max(tolerance, floor), "relative_difference": rel,
                "two_plain_runs_relative_difference": floor, "tolerance": tolerance}

    def bench(self) -> dict:
        import ray

        ray.shutdown()  # the bench starts its own local Ray: never two on one machine
        demo = importlib.util.find_spec("deepforest") is not None and not self.dry_run
        cmd = [sys.executable, str(REPO / "bench" / "overhead.py"), "--epochs", "2",
               "--repeats", "1", "--json", str(self.workdir / "bench.json")]
        if not demo:
            cmd += ["--config", str(self.tiny("bench", 3))]
        if not self.dry_run:
            cmd += ["--gpu"]
        ran = subprocess.run(cmd, capture_output=True, text=True, timeout=400)
        if ran.returncode != 0:
            return {"ok": False, "error": ran.stderr[-2000:]}
        return {"config": "demo" if demo else "tiny",
                **json.loads((self.workdir / "bench.json").read_text())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the JSON to write")
    ap.add_argument("--dry-run", action="store_true",
                    help="the same sequence on the CPU (no GPU needed)")
    ap.add_argument("--only", default=",".join(STEPS), help=f"steps to run, of {STEPS}")
    args = ap.parse_args(argv)
    only = [s for s in args.only.split(",") if s]
    unknown = sorted(set(only) - set(STEPS))
    if unknown:
        print(f"gpu_check: --only names {unknown}; the steps are {', '.join(STEPS)}",
              file=sys.stderr)
        return 2
    missing = missing_packages()
    if missing:
        print("gpu_check: cannot run, these packages do not import: " + "; ".join(missing)
              + ". Build the wheelhouse with scripts/gpu_wheelhouse.sh and install it "
              "(scripts/gpu_check.sh does both on the GPU machine).", file=sys.stderr)
        return 2
    import torch

    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: this machine has no GPU that torch can use (torch "
              f"{torch.__version__}, CUDA {torch.version.cuda}); use --dry-run to run the "
              "sequence on the CPU.", file=sys.stderr)
        return 2
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    workdir = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    check = Check(Path(args.out), args.dry_run, workdir)
    check.report["memory_mib"]["before"] = gpu_memory_used_mib()
    from raytune_ft.engine.cluster import init_ray

    init_ray(None)
    check.make_fixtures()
    for name in only:
        check.step(name, getattr(check, name))
    check.report["finished_at"] = time.time()
    check.write()
    failed = [n for n, s in check.report["steps"].items() if not s["ok"]]
    if failed:  # the runs' logs and checkpoints say why; kept
        print(f"[gpu_check] the failed steps' runs are kept in {workdir}")
    else:  # ~400 MB of runs and checkpoints per check
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"[gpu_check] wrote {args.out}: " + (f"FAILED {failed}" if failed else "all ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
