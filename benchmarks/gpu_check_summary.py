"""benchmarks/gpu_check.sh's record keeper: one line per step into OUT/steps.jsonl, then
OUT/gpu_check.json and OUT/gpu_check.md rebuilt from them (after every step, so a run cut short
still leaves its summary).

    python3 benchmarks/gpu_check_summary.py step OUT NAME STATUS RC SECONDS LOG COMMAND
    python3 benchmarks/gpu_check_summary.py probe OUT KEY VALUE      (machine facts for the header)
"""

import json
import os
import sys

TAIL_LINES = 15  # the last lines of each step's log, kept in the summary


def _tail(path):
    try:
        with open(path, errors="replace") as handle:
            return handle.read().splitlines()[-TAIL_LINES:]
    except OSError:
        return []


def _load(out):
    steps, probes = [], {}
    path = os.path.join(out, "steps.jsonl")
    if os.path.exists(path):
        with open(path) as handle:
            for line in handle:
                record = json.loads(line)
                if record.pop("kind") == "probe":
                    probes[record["key"]] = record["value"]
                else:
                    steps.append(record)
    return steps, probes


def render(out):
    steps, probes = _load(out)
    summary = {
        "machine": probes,
        "steps": steps,
        "passed": all(step["status"] in ("pass", "skipped") for step in steps),
    }
    with open(os.path.join(out, "gpu_check.json"), "w") as handle:
        json.dump(summary, handle, indent=2)
    lines = ["# benchmarks/gpu_check.sh", ""] + [
        f"- {key}: {value}" for key, value in probes.items()
    ]
    lines += ["", "| step | status | seconds | command |", "|---|---|---|---|"]
    lines += [
        f"| {step['name']} | {step['status']} (rc {step['rc']}) | {step['seconds']} | `{step['command']}` |"
        for step in steps
    ]
    for step in steps:
        lines += ["", f"## {step['name']}: {step['status']}", "", "```", *step["log_tail"], "```"]
    with open(os.path.join(out, "gpu_check.md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return summary


def main(argv):
    kind, out, *rest = argv
    if kind == "step":
        name, status, rc, seconds, log, command = rest
        record = {
            "kind": "step",
            "name": name,
            "status": status,
            "rc": int(rc),
            "seconds": int(seconds),
            "command": command,
            "log": os.path.relpath(log, out),
            "log_tail": _tail(log),
        }
    elif kind == "probe":
        key, value = rest
        record = {"kind": "probe", "key": key, "value": value}
    else:
        raise SystemExit(f"gpu_check_summary: expected 'step' or 'probe', got {kind!r}")
    with open(os.path.join(out, "steps.jsonl"), "a") as handle:
        handle.write(json.dumps(record) + "\n")
    render(out)


if __name__ == "__main__":
    main(sys.argv[1:])
