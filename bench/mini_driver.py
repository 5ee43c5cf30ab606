"""Runs mini-swe-agent on a trajectory for bench/step_overhead.py, in the bench's own venv
(.venv-bench, `make bench-venv`): it is another project with pins of its own.

    .venv-bench/bin/python bench/mini_driver.py --cwd DIR --model deterministic|litellm [--url URL] CMD...

Runs the trajectory once to warm up (imports, litellm's first call), then once timed, and prints
one JSON line: {"steps": N, "wall_s": seconds of the timed `agent.run`, "version": ...}.
Each command is one step; the last step is mini-swe-agent's submit command.
"""

from __future__ import annotations

import argparse
import json
import os
import time

SUBMIT = "echo COMPLETE_TASK_AND_SUBMIT_FINAL_OUTPUT"


def agent_for(kind: str, url: str | None, cwd: str, commands: list[str]):  # type: ignore[no-untyped-def]
    from minisweagent.agents.default import DefaultAgent
    from minisweagent.environments.local import LocalEnvironment

    if kind == "deterministic":
        from minisweagent.models.test_models import DeterministicModel, make_output

        outputs = [make_output("", [{"command": c}], cost=0.0) for c in [*commands, SUBMIT]]
        model = DeterministicModel(outputs=outputs, cost_per_call=0.0)
    else:
        from minisweagent.models.litellm_model import LitellmModel

        model = LitellmModel(
            model_name="openai/scripted",
            model_kwargs={"api_base": url, "api_key": "not-needed"},
            cost_tracking="ignore_errors",
        )
    env = LocalEnvironment(cwd=cwd)
    return DefaultAgent(
        model, env, system_template="You run commands.", instance_template="{{task}}", step_limit=0, cost_limit=0
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cwd", required=True)
    parser.add_argument("--model", choices=["deterministic", "litellm"], required=True)
    parser.add_argument("--url")
    parser.add_argument("commands", nargs="+")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of the price list
    import minisweagent

    if args.model == "litellm":
        import litellm

        litellm.suppress_debug_info = True  # its "Provider List" banner on the unpriced model

    agent_for(args.model, args.url, args.cwd, args.commands).run("warm up")
    agent = agent_for(args.model, args.url, args.cwd, args.commands)
    started = time.perf_counter()
    result = agent.run("bench")
    wall = time.perf_counter() - started
    if result.get("exit_status") != "Submitted":
        raise SystemExit(f"mini-swe-agent did not finish: {result}")
    steps = sum(1 for m in agent.messages if m.get("role") == "assistant")
    print(json.dumps({"steps": steps, "wall_s": wall, "version": minisweagent.__version__}))


if __name__ == "__main__":
    main()
