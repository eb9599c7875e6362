"""A spot reclaim notice turned into what Ray Train counts as a preemption.

Ray Train charges a worker group that died on a node Ray knew was preempted (drained with reason
PREEMPTION: `RayActorError.preempted`) to `FailureConfig.max_preemption_failures`, and any other
death to `max_failures`. Ray's cluster launcher (`ray up` on AWS) does not turn EC2's two-minute
spot interruption notice into such a drain, so a reclaimed node would count as a crash. The
watcher on each GPU node (cluster.yaml starts it) polls the instance metadata service and, on a
notice, asks the GCS to drain the node with reason PREEMPTION and the notice's deadline: Ray
Train then checkpoints nothing new, waits out the deadline, and restarts the trial elsewhere
charged to --max-preemptions.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone

IMDS = "http://169.254.169.254"  # EC2's instance metadata service
NOTICE_PATH = "/latest/meta-data/spot/instance-action"


@dataclass(frozen=True)
class SpotNotice:
    """EC2's interruption notice: what will happen to the instance, and when (unix time)."""

    action: str
    at: float


def _token(imds: str, timeout: float) -> str | None:
    """An IMDSv2 session token (None where only IMDSv1 answers)."""
    request = urllib.request.Request(f"{imds}/latest/api/token", method="PUT",
                                     headers={"X-aws-ec2-metadata-token-ttl-seconds": "300"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.read().decode()
    except (urllib.error.URLError, OSError):
        return None


def spot_notice(imds: str = IMDS, timeout: float = 2.0) -> SpotNotice | None:
    """The instance's interruption notice, or None while there is none (IMDS answers 404)."""
    token = _token(imds, timeout)
    headers = {"X-aws-ec2-metadata-token": token} if token else {}
    request = urllib.request.Request(imds + NOTICE_PATH, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            body = json.loads(reply.read().decode())
    except (urllib.error.URLError, OSError, json.JSONDecodeError):
        return None
    when = datetime.strptime(body["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    return SpotNotice(str(body.get("action", "terminate")), when.timestamp())


def drain_as_preempted(gcs_address: str, node_id: str, deadline: float, message: str) -> None:
    """Ask the GCS to drain `node_id` with reason PREEMPTION by `deadline` (unix time); what
    `ray drain-node --reason DRAIN_NODE_REASON_PREEMPTION` does."""
    import ray
    from ray.core.generated import autoscaler_pb2

    client = ray._raylet.GcsClient(address=gcs_address)
    accepted, why = client.drain_node(
        node_id, autoscaler_pb2.DrainNodeReason.Value("DRAIN_NODE_REASON_PREEMPTION"), message,
        int(deadline * 1000))
    if not accepted:
        raise RuntimeError(f"the GCS refused to drain node {node_id}: {why}")


def watch(gcs_address: str, node_id: str, imds: str = IMDS, every_s: float = 5.0,
          log=print) -> SpotNotice:
    """Poll until a notice comes, drain this node as preempted, return the notice."""
    while True:
        notice = spot_notice(imds)
        if notice is not None:
            drain_as_preempted(gcs_address, node_id, notice.at,
                               f"spot interruption notice: {notice.action} at "
                               f"{datetime.fromtimestamp(notice.at, timezone.utc):%H:%M:%S} UTC")
            log(f"[raytune_ft] spot notice ({notice.action} in {notice.at - time.time():.0f}s): "
                f"node {node_id} drained as preempted", flush=True)
            return notice
        time.sleep(every_s)


__all__ = ["IMDS", "SpotNotice", "drain_as_preempted", "spot_notice", "watch"]
