"""METEOR 1.5 (coco-caption's ``-l en -norm``): in Python by default, or through pycocoevalcap's jar.

``Meteor()`` computes the jar's numbers in Python (shared_eval.meteor_align; no Java). ``Meteor(backend="java")``
is the oracle, with one long-lived JVM per Python process. The jar is driven exactly as coco-caption does (``SCORE ||| refs ||| hyp`` lines, then one ``EVAL`` line whose
answer holds the per-item scores and the corpus score computed from summed statistics), but the SCORE lines
of a call are pipelined instead of sent one round trip at a time, and the JVM (20-40 s to start, as it
loads the paraphrase table) is started once and reused by every ``Meteor`` instance.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from importlib import util as importlib_util
from pathlib import Path

from .bleu import _check

__all__ = ["Meteor", "MeteorUnavailableError", "meteor_jar", "shutdown"]


class MeteorUnavailableError(RuntimeError):
    """Java or the METEOR jar is missing."""


def meteor_jar() -> Path:
    """Path of ``meteor-1.5.jar`` shipped in the pycocoevalcap wheel."""
    spec = importlib_util.find_spec("pycocoevalcap")
    if spec is None or not spec.submodule_search_locations:
        raise MeteorUnavailableError("METEOR needs the jar shipped with pycocoevalcap: pip install pycocoevalcap==1.2")
    jar = Path(list(spec.submodule_search_locations)[0]) / "meteor" / "meteor-1.5.jar"
    if not jar.is_file() or not (jar.parent / "data" / "paraphrase-en.gz").is_file():
        raise MeteorUnavailableError(f"METEOR jar or its paraphrase table missing next to {jar}: "
                                     "reinstall pycocoevalcap==1.2")
    return jar


class _MeteorProcess:
    """The JVM running ``meteor-1.5.jar - - -stdio -l en -norm``."""

    def __init__(self) -> None:
        java = shutil.which("java")
        if java is None:
            raise MeteorUnavailableError("METEOR needs Java (a JRE 8+ on PATH, e.g. apt-get install "
                                         "openjdk-17-jre-headless); evaluate(..., meteor=False) skips it")
        jar = meteor_jar()
        # -Duser.* forces the number format the parser below expects, whatever the machine's locale.
        cmd = [java, "-Duser.language=en", "-Duser.country=US", "-jar", "-Xmx2G", jar.name,
               "-", "-", "-stdio", "-l", "en", "-norm"]
        self.proc = subprocess.Popen(cmd, cwd=jar.parent, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.lock = threading.Lock()
        self.pid_owner = os.getpid()  # a forked child must not share the parent's pipes

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _readline(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise MeteorUnavailableError(f"the METEOR JVM exited (status {self.proc.poll()}); "
                                         "is there enough memory for -Xmx2G?")
        return line.decode().strip()

    def score(self, lines: Sequence[str]) -> tuple[float, list[float]]:
        """Send the SCORE lines (pipelined), then the EVAL line; return (corpus, per-item)."""
        with self.lock:
            stats = self._statistics(lines)
            self.proc.stdin.write(("EVAL ||| " + " ||| ".join(stats) + "\n").encode())
            self.proc.stdin.flush()
            per_item = [float(self._readline()) for _ in lines]
            corpus = float(self._readline())
        return corpus, per_item

    def statistics(self, lines: Sequence[str]) -> list[str]:
        """The jar's answers to the SCORE lines: one sufficient-statistics line each."""
        with self.lock:
            return self._statistics(lines)

    def _statistics(self, lines: Sequence[str]) -> list[str]:
        payload = "".join(f"{line}\n" for line in lines).encode()
        errors: list[BaseException] = []

        def write() -> None:
            try:
                self.proc.stdin.write(payload)
                self.proc.stdin.flush()
            except BaseException as e:  # surfaced below, after reading what we can
                errors.append(e)

        writer = threading.Thread(target=write, daemon=True)
        writer.start()
        stats = [self._readline() for _ in lines]
        writer.join()
        if errors:
            raise MeteorUnavailableError(f"writing to the METEOR JVM failed: {errors[0]}")
        return stats

    def close(self) -> None:
        with self.lock:
            if self.proc.stdin and not self.proc.stdin.closed:
                try:
                    self.proc.stdin.close()
                except OSError:
                    pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_PROCESS: _MeteorProcess | None = None
_PROCESS_LOCK = threading.Lock()


def _process() -> _MeteorProcess:
    global _PROCESS
    with _PROCESS_LOCK:
        if _PROCESS is None or not _PROCESS.alive() or _PROCESS.pid_owner != os.getpid():
            _PROCESS = _MeteorProcess()
        return _PROCESS


def shutdown() -> None:
    """Stop the METEOR JVM (registered at exit; safe to call any time)."""
    global _PROCESS
    with _PROCESS_LOCK:
        if _PROCESS is not None and _PROCESS.pid_owner == os.getpid():
            _PROCESS.close()
        _PROCESS = None


atexit.register(shutdown)


def score_line(hypothesis: str, references: Sequence[str]) -> str:
    """coco-caption's SCORE line (``|||`` removed from the hypothesis, then double spaces replaced once)."""
    for text in (hypothesis, *references):
        if "\n" in text or "\r" in text:
            raise ValueError(f"METEOR input must be one line per caption (tokenize it first): {text!r}")
    hypothesis = hypothesis.replace("|||", "").replace("  ", " ")
    return " ||| ".join(("SCORE", " ||| ".join(references), hypothesis))


BACKENDS = ("java", "python")


class Meteor:
    """pycocoevalcap-compatible METEOR: ``compute_score(gts, res) -> (corpus, per-item list)``.

    ``backend="python"`` (default) computes the jar's numbers without Java (shared_eval.meteor_align), reading the
    jar's resources from a disk cache built on first use; ``backend="java"`` drives the jar (the oracle).
    """

    def __init__(self, backend: str = "python") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"Meteor backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        if backend == "java":
            self._proc = _process()  # start (or reuse) the JVM now, as pycocoevalcap's constructor does
        else:
            from .meteor_resources import load_resources

            load_resources()

    def compute_score(self, gts: Mapping, res: Mapping):
        _check(gts, res)
        if not gts:
            raise ValueError("METEOR needs at least one item")
        lines = [score_line(res[k][0], gts[k]) for k in gts]
        if self.backend == "python":
            from .meteor_align import corpus_score, score_lines, stats_score

            stats = score_lines(lines)
            return corpus_score(stats), [stats_score(s) for s in stats]
        self._proc = _process()
        return self._proc.score(lines)

    def method(self) -> str:
        return "METEOR"
