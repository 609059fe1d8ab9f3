"""Fixtures for registration tests: real files with personal information, analysed on the node."""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from stdnum.cn import ric

from conftest import World
from datavalley.client import Client
from datavalley.node.analysis import analyse_source, registration_payload


def make_ric(rng: random.Random) -> str:
    """A resident ID number with a valid check digit (GB 11643)."""
    base = f"520102{rng.randint(1960, 2000)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    base += f"{rng.randint(0, 999):03d}"
    return base + ric.calc_check_digit(base + "0")  # stdnum expects a placeholder check digit


def write_trips(path: Path, rows: int = 200, seed: int = 7, extra: int = 0) -> Path:
    """A logistics trip file: driver ID numbers and phones (personal), cities, distances, fares."""
    rng = random.Random(seed)
    drivers = [
        (make_ric(rng), f"13{rng.randint(0, 9)}{rng.randint(10_000_000, 99_999_999)}") for _ in range(40)
    ]
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["trip_id", "driver_id", "driver_phone", "origin_city", "dest_city", "distance_km", "fare_cny"]
        )
        for i in range(rows + extra):
            d = drivers[i % len(drivers)]
            w.writerow(
                [
                    i,
                    d[0],
                    d[1],
                    rng.choice(["贵阳", "遵义", "六盘水"]),
                    rng.choice(["昆明", "重庆"]),
                    rng.randint(5, 900),
                    rng.randint(20, 3000),
                ]
            )
    return path


def analysis_of(path: Path) -> dict[str, Any]:
    return registration_payload(analyse_source(str(path)))


@dataclass
class Provider:
    participant_id: str
    member_id: str
    client: Client


@pytest.fixture
def provider(world: World) -> Provider:
    p, m, token = world.onboard("Qiantong Logistics", ["provider", "consumer"])
    return Provider(p.id, m.id, world.client_for(token))


@pytest.fixture
def consumer(world: World) -> Provider:
    p, m, token = world.onboard("Guiyang Bank", ["consumer", "provider"])
    return Provider(p.id, m.id, world.client_for(token))


@pytest.fixture
def trips(tmp_path: Path) -> Path:
    return write_trips(tmp_path / "trips.csv")
