"""`python -m raytune_ft.spot_watch --address HEAD:6379`: on a spot GPU node, turn the cloud's
interruption notice into a Ray drain with reason PREEMPTION, so the trials there restart
charged to --max-preemptions, not --max-failures (raytune_ft.engine.spot). cluster.yaml starts
it in the background on every worker node after `ray start`.
"""

from __future__ import annotations

import argparse
import sys

from raytune_ft.errors import user_errors_exit_2


@user_errors_exit_2
def main(argv: list[str] | None = None, prog: str = "python -m raytune_ft.spot_watch") -> int:
    from raytune_ft.engine.spot import IMDS, watch

    ap = argparse.ArgumentParser(prog=prog, description=__doc__)
    ap.add_argument("--address", required=True, help="the cluster's GCS address, HEAD_IP:6379")
    ap.add_argument("--node-id", default=None,
                    help="the Ray node to drain (default: the node this command runs on)")
    ap.add_argument("--imds", default=IMDS, help=f"instance metadata service (default {IMDS})")
    ap.add_argument("--every", type=float, default=5.0, help="seconds between polls")
    args = ap.parse_args(argv)
    node_id = args.node_id
    if node_id is None:
        import ray

        ray.init(address=args.address, logging_level="WARNING", log_to_driver=False)
        node_id = ray.get_runtime_context().get_node_id()
        ray.shutdown()
    print(f"[raytune_ft] spot watch: node {node_id}, polling {args.imds} every {args.every:g}s",
          flush=True)
    watch(args.address, node_id, args.imds, args.every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
