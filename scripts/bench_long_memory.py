"""Peak memory of a whole run on a 1 MB text against one on a short text (issue 13's target:
within 50 MB), each in its own process.

    .venv/bin/python scripts/bench_long_memory.py [--model GGUF] [--megabytes 1] [--fake] \\
        [--ctx 4096] [--max-tokens 256] [--threads 1] [-- EXTRA EXTRACT OPTIONS]

The long text is a made-up report: paragraphs of office prose, each naming one or two of
2,500 different people, so that ``--each -s 'name: full name of a person'`` finds new items
all the way through and everything that grows with the text (the merged list, its evidence,
the checkpoint) does grow. The short text is its first paragraph. Both are run to the end
through ``qwenjson extract --each --checkpoint`` with the same options; the default model is
SmolLM2-135M (the test model). Printed: peak RSS of each (``ru_maxrss`` of the child, from
``wait4``), their difference, the RSS sampled along the long run (from ``/proc``, so growth
shows as a slope), the pieces and items, and the seconds.

``--fake``: the same command in the child, with the model's generation replaced by an answer
listing every full name the piece holds (the model is still loaded, and its tokenizer and chat
template split the text and size the pieces; grounding, evidence, validation, merging, the
checkpoint and the output are qwenjson's own). That reads a 1 MB text in minutes on a shared
machine where the real model takes hours, and it measures what qwenjson itself holds; what
llama.cpp holds (weights, a KV cache of ``--ctx`` tokens) does not grow with the text: the real
model's run shows it flat once the first piece has filled the context.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

FIRST = str.split(
    "Alice Bruno Chen Dara Elena Farid Grace Hugo Ines Jonas Kenji Lena Marco Nadia Oscar "
    "Priya Quentin Rosa Samir Tomas Ursula Victor Wanda Xavier Yara Zoltan Amara Boris Celia "
    "Dmitri Esther Felix Greta Hassan Ingrid Jamal Katya Luis Mira Nils Olga Pavel Rania Stefan "
    "Tara Umar Vera Walter Yusuf Zara"
)
LAST = str.split(
    "Morgan Keller Wei Okafor Petrova Haddad Liu Martin Duarte Berg Sato Fischer Rossi Khan "
    "Lindqvist Nair Dubois Silva Aziz Novak Becker Moreau Kowalski Ibrahim Costa Larsen Tanaka "
    "Weber Lopez Ivanova Schmidt Murphy Jansen Rahman Horvat Nielsen Santos Yilmaz Virtanen "
    "Brennan Castillo Fontaine Gallagher Hoffmann Jovanovic Kaur Lambert Mendes Ortega Quinn"
)
PROSE = [
    "The quarterly review covered supply costs, staffing and the delayed warehouse move.",
    "Several teams reported that the new scheduling system reduced overtime in the spring.",
    "The committee asked for a clearer budget breakdown before the next planning cycle.",
    "Customer complaints fell after the returns process was simplified in March.",
    "Two suppliers missed delivery targets, and the contracts are being renegotiated.",
    "The audit found no material issues, though record keeping needs to improve.",
    "Training sessions on the safety procedures were attended by most of the staff.",
    "Energy use in the main building dropped after the heating controls were replaced.",
]
ROLES = ["presented the figures", "led the discussion", "raised a concern", "took the minutes"]


def report(megabytes: float, seed: int = 0) -> str:
    """About ``megabytes`` MB of paragraphs, each naming one or two people."""
    rng = random.Random(seed)
    people = [f"{f} {s}" for s in LAST for f in FIRST]
    rng.shuffle(people)
    paragraphs: list[str] = []
    size = 0
    while size < megabytes * 1_000_000:
        named = [people[(len(paragraphs) * 2 + k) % len(people)] for k in range(rng.randint(1, 2))]
        sentences = rng.sample(PROSE, 4)
        for name in named:
            sentences.insert(rng.randint(0, len(sentences)), f"{name} {rng.choice(ROLES)}.")
        paragraphs.append(" ".join(sentences))
        size += len(paragraphs[-1]) + 2
    return "\n\n".join(paragraphs) + "\n"


def run(argv: list[str], text: Path, samples: list[tuple[float, float]]) -> dict[str, float]:
    """Run ``argv`` on ``text``; its exit code, seconds and peak RSS (MiB); RSS samples
    (seconds, MiB) are appended to ``samples`` every second."""
    started = time.monotonic()
    with (
        open(text, "rb") as stdin,
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
    ):
        proc = subprocess.Popen(argv, stdin=stdin, stdout=out, stderr=err)
        while True:  # wait4, not poll: poll would reap the child and lose its rusage
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            rss = _current_rss(proc.pid)
            if rss is not None:
                samples.append((round(time.monotonic() - started, 1), round(rss, 1)))
                if len(samples) % 60 == 0:  # a long run's progress, in case it is stopped
                    print("rss", *samples[-1], flush=True)
            time.sleep(1.0)
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        items = sum(1 for _ in out)
        err.seek(0)
        if code != 0:
            print(err.read().decode(errors="replace")[-2000:], file=sys.stderr)
    return {
        "exit_code": code,
        "seconds": round(time.monotonic() - started, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "items": items,
    }


def _current_rss(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


NAME = re.compile(r"\b[A-Z][a-z]+ [A-Z][a-z]+(?= (?:presented|led|raised|took) )")


class NamesModel:
    """A model's tokenizer and chat template with a stand-in for its generation: the answer
    lists every full name of the piece (as a model that finds them all would)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    @property
    def n_ctx(self) -> int:
        return int(self.engine.n_ctx)

    def __getattr__(self, name: str) -> Any:  # count_tokens, render_chat, prompt_tokens, close
        return getattr(self.engine, name)

    def generate(self, messages: Any, grammar: str, **options: Any) -> Any:
        from qwenjson.generation import GenerationResult

        names = NAME.findall(messages[1]["content"])
        out = json.dumps({"items": [{"name": n} for n in names]})
        if options.get("on_text") is not None:
            options["on_text"](out)
        if options.get("constraint") is not None:
            options["constraint"].accept(out.encode())
        return GenerationResult(out, 10, len(out), 1.0, 1.0, "stop")


def fake_child(model: str, ctx: int, argv: list[str]) -> None:
    """``qwenjson extract ARGV`` in this process, generating with ``NamesModel``."""
    from qwenjson import cli, pipeline

    fake = NamesModel(pipeline.open_model(model, threads=1, n_ctx=ctx))
    pipeline.open_model = lambda *_, **__: fake  # type: ignore[assignment]
    sys.argv = ["qwenjson", "extract", *argv]
    cli.main()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", help="the GGUF to run [default: the test model, SmolLM2-135M]")
    p.add_argument("--megabytes", type=float, default=1.0)
    p.add_argument("--ctx", type=int, default=4096)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    p.add_argument("--fake", action="store_true", help="generate with a stand-in (see above)")
    p.add_argument("--fake-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("extra", nargs="*", help="more `qwenjson extract` options (after --)")
    args = p.parse_args()
    model = args.model
    if model is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.grammar_engine import default_model_path

        model = str(default_model_path())
    if args.fake_child:
        fake_child(model, args.ctx, args.extra)
        return
    text = report(args.megabytes)
    first = text.split("\n\n", 1)[0] + "\n"
    figures: dict[str, object] = {"model": model, "bytes": len(text.encode()), "options": {}}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "long.txt").write_text(text)
        (tmp / "short.txt").write_text(first)
        options = ["-m", model, "--quiet", "--each", "-s", "name: full name of a person"]
        options += ["--no-cache", "--threads", str(args.threads), "--ctx", str(args.ctx)]
        options += ["--max-tokens", str(args.max_tokens), *args.extra]
        if args.fake:
            me = [
                sys.executable,
                __file__,
                "--fake-child",
                "--model",
                model,
                "--ctx",
                str(args.ctx),
            ]
            argv = [*me, "--", *options]
        else:
            argv = [sys.executable, "-m", "qwenjson", "extract", *options]
        figures["options"] = options
        figures["fake"] = args.fake
        samples: list[tuple[float, float]] = []
        figures["short"] = run([*argv, "--checkpoint", str(tmp / "s.ck")], tmp / "short.txt", [])
        print("short", json.dumps(figures["short"]), flush=True)
        load = os.getloadavg()[0]
        figures["long"] = run([*argv, "--checkpoint", str(tmp / "l.ck")], tmp / "long.txt", samples)
        figures["long"]["pieces"] = sum(  # type: ignore[index]
            1 for line in (tmp / "l.ck").read_text().splitlines() if line.startswith('{"piece"')
        )
        figures["long"]["checkpoint_bytes"] = (tmp / "l.ck").stat().st_size  # type: ignore[index]
        figures["load"] = [round(load, 2), round(os.getloadavg()[0], 2)]
        print("long", json.dumps(figures["long"]), flush=True)
    step = max(1, len(samples) // 10)
    figures["long_rss_samples"] = samples[::step] + samples[-1:]
    print("long run's RSS (s, MiB):", figures["long_rss_samples"])
    short, long = figures["short"], figures["long"]
    difference = long["peak_rss_mib"] - short["peak_rss_mib"]  # type: ignore[index]
    figures["difference_mib"] = round(difference, 1)
    print(
        f"peak RSS: short {short['peak_rss_mib']} MiB, {args.megabytes:g} MB text "  # type: ignore[index]
        f"{long['peak_rss_mib']} MiB: {difference:+.1f} MiB"
    )  # type: ignore[index]
    if args.json is not None:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
