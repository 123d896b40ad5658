"""Run a benchmark script on an earlier commit and on this tree, interleaved, in one run.

    python bench/before_after.py --ref 53b96a3 --rounds 2 -- bench/bench_capture.py --sizes 64,256,1024 --no-memory

The earlier commit is checked out with `git worktree` into a temporary folder (removed at the
end), and each round runs the script there (before) and here (after), alternating which goes
first: this machine is shared, and a single figure varies by 3x, so only figures taken side by
side in one run compare. Each run uses its own tree's copy of the script and of the package
(PYTHONPATH puts the tree first, ahead of an editable install). The outputs are printed whole,
labelled; compare the scripts' own ratios (each is against a baseline measured in that run).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(tree: str, script: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": tree + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, os.path.join(tree, script[0]), *script[1:]], cwd=tree, env=env,
                         capture_output=True, text=True)
    return out.stdout + (f"\n[stderr, exit {out.returncode}]\n{out.stderr[-3000:]}" if out.returncode else "")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ref", required=True, help="the commit to compare with (before)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("script", nargs=argparse.REMAINDER, help="-- then the script and its arguments, relative to the tree")
    args = parser.parse_args()
    script = args.script[1:] if args.script[:1] == ["--"] else args.script
    if not script:
        parser.error("name the script after --")
    with tempfile.TemporaryDirectory(prefix="explainer-before-") as folder:
        before = os.path.join(folder, "tree")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", before, args.ref], check=True, capture_output=True)
        try:
            for r in range(args.rounds):
                order = [("before", before), ("after", ROOT)]
                for label, tree in order if r % 2 == 0 else order[::-1]:
                    print(f"\n======== round {r + 1}, {label} ({args.ref if label == 'before' else 'this tree'}): {' '.join(script)}")
                    sys.stdout.write(run(tree, script))
                    sys.stdout.flush()
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", before], capture_output=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
