"""A simulated world kept on disk, so a restarted simulator serves the same history (demo mode).

A World is a pure function of its WorldConfig (the seed, the sizes and the anchor, "now" at creation) and of
the ticks applied to it (each tick's time and counts). So the disk holds exactly that: `world.json` (the
config, its anchor fixed the first time) and `ticks.jsonl` (one line per tick, written before the tick is
applied). Opening the directory again rebuilds the world and replays every tick: every id that existed comes
back with the same created_at, updated_at and status history, the random streams are where they were, and
the next tick continues the same world. Replay is cheap (~0.3 ms a tick: a week of one-minute ticks replays
in a few seconds).

Only ticks are kept: the admin API's other changes (renames, added accounts or keys, faults) are not, as
demo mode makes none.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import time
from pathlib import Path
from typing import Any

from .config import WorldConfig
from .world import World

WORLD_FILE = "world.json"
TICK_LOG = "ticks.jsonl"
FORMAT = 1

_TICK_SIGNATURE = inspect.signature(World.tick)


class DurableWorld(World):
    """A World whose ticks are appended to a log before they apply (see `open_durable_world`)."""

    def __init__(self, config: WorldConfig, tick_log: Path):
        super().__init__(config)
        self.tick_log_path = tick_log
        self._replay(tick_log)
        self._log = open(tick_log, "a", encoding="utf-8")  # noqa: SIM115 (open for the world's life)

    def tick(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # Unknown counts fail here, before anything is logged (as World.tick would: TypeError).
        arguments = _TICK_SIGNATURE.bind(self, *args, **kwargs).arguments
        arguments.pop("self")
        with self.lock:
            # The time World.tick would take, fixed now so the replay uses the very same one.
            arguments["now"] = max(arguments.get("now") or int(time.time()), self.anchor)
            # Written (and synced) before applying: a tick that was served is always in the log. A tick that
            # then fails is replayed the same way: it fails at the same point, leaving the same state.
            self._log.write(json.dumps(arguments, sort_keys=True) + "\n")
            self._log.flush()
            os.fsync(self._log.fileno())
            return super().tick(**arguments)

    def close(self) -> None:
        self._log.close()

    def _replay(self, tick_log: Path) -> None:
        try:
            lines = tick_log.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        for number, line in enumerate(lines, 1):
            try:
                arguments = json.loads(line)
            except ValueError:
                if number == len(lines):  # a last line cut short by a crash: that tick never applied
                    _truncate_to_lines(tick_log, lines[:-1])
                    return
                raise
            try:
                super().tick(**arguments)
            except (TypeError, KeyError, ValueError):  # failed when it was live too (see tick)
                pass


def open_durable_world(directory: Path, config: WorldConfig | None = None) -> DurableWorld:
    """The world kept in `directory`: created from `config` (anchored at the current time unless the config
    says otherwise) the first time, rebuilt from its own files (`config` is then ignored) every later time."""
    directory.mkdir(parents=True, exist_ok=True)
    world_file = directory / WORLD_FILE
    stored = _read_config(world_file)
    if stored is None:
        config = config or WorldConfig()
        stored = dataclasses.replace(config, anchor=config.anchor or int(time.time()))
        tmp = world_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"format": FORMAT, "config": dataclasses.asdict(stored)}, indent=1))
        os.replace(tmp, world_file)
        (directory / TICK_LOG).unlink(missing_ok=True)  # ticks of an older world do not apply to this one
    return DurableWorld(stored, directory / TICK_LOG)


def _read_config(world_file: Path) -> WorldConfig | None:
    try:
        saved = json.loads(world_file.read_text())
    except FileNotFoundError:
        return None
    if saved.get("format") != FORMAT:
        raise ValueError(f"{world_file}: unknown format {saved.get('format')!r}; remove the directory to start a "
                         "new demo world")
    known = {f.name for f in dataclasses.fields(WorldConfig)}
    # A field added to WorldConfig since keeps its default (the world it was saved with did not have it).
    return WorldConfig(**{k: v for k, v in saved["config"].items() if k in known})


def _truncate_to_lines(path: Path, lines: list[str]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(tmp, path)
