"""The national computing-power network as versioned data: hubs, clusters, provinces, grid factors.

Everything here is data with a source (``SOURCES``); values that are *modelled* rather than published
say so (``MODELLED``). Changing any value means bumping ``VERSION``: placements record the topology
version they were decided under.

- 8 national hub nodes and 10 data-centre clusters of the "East Data, West Computing" programme
  (NDRC, CAC, MIIT, NEA, approval letters of February 2022, 发改高技〔2021〕1930/1931 号 et seq.).
- PUE targets: ≤ 1.25 for clusters in eastern hubs, ≤ 1.2 for western hubs (same letters).
- Latency: the programme's target is ≤ 20 ms between hubs and the regions they serve. The matrix here is
  *modelled* from great-circle distance (one-way: 1 ms fixed + distance × 1.5 route factor / 200 km/ms).
- Grid CO2 emission factors: Ministry of Ecology and Environment & National Bureau of Statistics,
  "2022 electricity CO2 emission factors" (公告 2024 年第 33 号, 20 Dec 2024), provincial average factors
  in tCO2/MWh (= kgCO2/kWh). ``checked=True`` marks factors confirmed against a second published report
  of the table in this version (national, regional and the five highest/lowest provinces);
  the others are transcribed from the MEE table and await that second check.
- Hourly carbon-intensity profile: *modelled* (``hourly_factor``): the provincial annual average is
  modulated by a solar shape whose amplitude is the province's assumed solar share, daily mean preserved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

VERSION = "2026-12-04.1"

SOURCES = {
    "hubs_clusters": "NDRC/CAC/MIIT/NEA approval letters for the national computing hub nodes, Feb 2022 "
    "(发改高技〔2021〕1930号, 1931号 and the letters for each hub)",
    "pue": "same letters: new data centres in eastern hub clusters PUE ≤ 1.25, western ≤ 1.2",
    "latency_target": "same programme: ≤ 20 ms network latency target within and between hub regions",
    "grid_factors": "MEE & NBS 关于发布2022年电力二氧化碳排放因子的公告 (20 Dec 2024); provincial average "
    "electricity CO2 emission factors, tCO2/MWh",
}

MODELLED = {
    "latency_ms": "one-way = 1 ms + great-circle km × 1.5 / 200 km per ms (fibre, route factor 1.5)",
    "hourly_profile": "factor(h) = annual × (1 − a × (s(h) − 1/π)), s(h) = max(0, sin(π (h − 6) / 12)), "
    "a = assumed solar share of the province (SOLAR_SHARE); daily mean equals the annual factor",
    "watts_per_core": "default 10 W per core at the server (a 400 W dual-socket node with 40 cores)",
}

NATIONAL_FACTOR = 0.5366
REGIONAL_FACTORS = {
    "north": 0.6776,
    "northeast": 0.5564,
    "east": 0.5617,
    "central": 0.5395,
    "northwest": 0.5857,
    "south": 0.3869,
    "southwest": 0.2268,
}


@dataclass(frozen=True)
class Province:
    code: str  # pinyin, lower case
    name_zh: str
    division: str  # first two digits of the administrative division code (as in a USCC)
    grid_factor: float  # tCO2/MWh, MEE 2022
    checked: bool
    lat: float
    lon: float
    east: bool


def _p(code: str, zh: str, div: str, f: float, ok: bool, lat: float, lon: float, east: bool) -> Province:
    return Province(code, zh, div, f, ok, lat, lon, east)


PROVINCES: dict[str, Province] = {
    p.code: p
    for p in (
        _p("beijing", "北京", "11", 0.5580, False, 39.90, 116.40, True),
        _p("tianjin", "天津", "12", 0.7041, True, 39.13, 117.20, True),
        _p("hebei", "河北", "13", 0.7252, True, 38.04, 114.51, True),
        _p("shanxi", "山西", "14", 0.7096, True, 37.87, 112.55, False),
        _p("inner_mongolia", "内蒙古", "15", 0.6849, True, 40.84, 111.75, False),
        _p("liaoning", "辽宁", "21", 0.5626, False, 41.80, 123.43, True),
        _p("jilin", "吉林", "22", 0.4932, False, 43.88, 125.32, False),
        _p("heilongjiang", "黑龙江", "23", 0.5368, False, 45.75, 126.63, False),
        _p("shanghai", "上海", "31", 0.5849, False, 31.23, 121.47, True),
        _p("jiangsu", "江苏", "32", 0.5978, False, 32.06, 118.80, True),
        _p("zhejiang", "浙江", "33", 0.5153, False, 30.27, 120.15, True),
        _p("anhui", "安徽", "34", 0.6782, True, 31.86, 117.28, True),
        _p("fujian", "福建", "35", 0.4092, True, 26.08, 119.30, True),
        _p("jiangxi", "江西", "36", 0.5752, False, 28.68, 115.86, False),
        _p("shandong", "山东", "37", 0.6410, False, 36.65, 117.12, True),
        _p("henan", "河南", "41", 0.6058, False, 34.76, 113.65, False),
        _p("hubei", "湖北", "42", 0.4364, False, 30.59, 114.30, False),
        _p("hunan", "湖南", "43", 0.4900, False, 28.23, 112.94, False),
        _p("guangdong", "广东", "44", 0.4403, False, 23.13, 113.26, True),
        _p("guangxi", "广西", "45", 0.4044, True, 22.82, 108.32, False),
        _p("hainan", "海南", "46", 0.4184, False, 20.04, 110.34, True),
        _p("chongqing", "重庆", "50", 0.5227, False, 29.56, 106.55, False),
        _p("sichuan", "四川", "51", 0.1404, True, 30.66, 104.07, False),
        _p("guizhou", "贵州", "52", 0.4989, False, 26.65, 106.63, False),
        _p("yunnan", "云南", "53", 0.1073, True, 25.04, 102.71, False),
        _p("shaanxi", "陕西", "61", 0.6558, False, 34.26, 108.94, False),
        _p("gansu", "甘肃", "62", 0.4772, False, 36.06, 103.83, False),
        _p("qinghai", "青海", "63", 0.1567, True, 36.62, 101.78, False),
        _p("ningxia", "宁夏", "64", 0.6423, False, 38.49, 106.23, False),
        _p("xinjiang", "新疆", "65", 0.6231, False, 43.83, 87.62, False),
    )
}
BY_DIVISION = {p.division: p for p in PROVINCES.values()}

# Modelled solar share (amplitude of the diurnal intensity dip); north-west grids carry most solar.
SOLAR_SHARE = {
    "gansu": 0.35,
    "ningxia": 0.30,
    "qinghai": 0.35,
    "inner_mongolia": 0.25,
    "hebei": 0.20,
    "xinjiang": 0.25,
    "shanxi": 0.15,
}
DEFAULT_SOLAR_SHARE = 0.10


@dataclass(frozen=True)
class Hub:
    id: str
    name: str
    name_zh: str
    west: bool
    pue_target: float
    lat: float
    lon: float


@dataclass(frozen=True)
class Cluster:
    id: str
    name: str
    name_zh: str
    hub: str
    provinces: tuple[str, ...]  # the demonstration zone spans three
    lat: float
    lon: float

    @property
    def west(self) -> bool:
        return HUBS[self.hub].west

    @property
    def pue_target(self) -> float:
        return HUBS[self.hub].pue_target


HUBS: dict[str, Hub] = {
    h.id: h
    for h in (
        Hub("jingjinji", "Beijing-Tianjin-Hebei", "京津冀", False, 1.25, 39.90, 116.40),
        Hub("yangtze_delta", "Yangtze River Delta", "长三角", False, 1.25, 31.23, 121.47),
        Hub(
            "greater_bay",
            "Guangdong-Hong Kong-Macao Greater Bay Area",
            "粤港澳大湾区",
            False,
            1.25,
            23.13,
            113.26,
        ),
        Hub("chengyu", "Chengdu-Chongqing", "成渝", False, 1.25, 30.10, 105.30),
        Hub("inner_mongolia", "Inner Mongolia", "内蒙古", True, 1.2, 40.84, 111.75),
        Hub("guizhou", "Guizhou", "贵州", True, 1.2, 26.65, 106.63),
        Hub("gansu", "Gansu", "甘肃", True, 1.2, 35.71, 107.64),
        Hub("ningxia", "Ningxia", "宁夏", True, 1.2, 37.50, 105.19),
    )
}

CLUSTERS: dict[str, Cluster] = {
    c.id: c
    for c in (
        Cluster("zhangjiakou", "Zhangjiakou", "张家口集群", "jingjinji", ("hebei",), 40.77, 114.89),
        Cluster(
            "yangtze_demo_zone",
            "Yangtze River Delta eco-green integrated development demonstration zone",
            "长三角生态绿色一体化发展示范区集群",
            "yangtze_delta",
            ("shanghai", "jiangsu", "zhejiang"),
            31.00,
            120.90,
        ),
        Cluster("wuhu", "Wuhu", "芜湖集群", "yangtze_delta", ("anhui",), 31.33, 118.43),
        Cluster("shaoguan", "Shaoguan", "韶关集群", "greater_bay", ("guangdong",), 24.81, 113.60),
        Cluster("tianfu", "Tianfu", "天府集群", "chengyu", ("sichuan",), 30.40, 104.07),
        Cluster("chongqing", "Chongqing", "重庆集群", "chengyu", ("chongqing",), 29.56, 106.55),
        Cluster("horinger", "Horinger", "和林格尔集群", "inner_mongolia", ("inner_mongolia",), 40.38, 111.82),
        Cluster("guian", "Gui'an", "贵安集群", "guizhou", ("guizhou",), 26.42, 106.40),
        Cluster("qingyang", "Qingyang", "庆阳集群", "gansu", ("gansu",), 35.71, 107.64),
        Cluster("zhongwei", "Zhongwei", "中卫集群", "ningxia", ("ningxia",), 37.51, 105.19),
    )
}

LATENCY_TARGET_MS = 20.0
WATTS_PER_CORE = 10.0


def _km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(a))


def _latency(km: float) -> float:
    return round(1.0 + km * 1.5 / 200.0, 2)


def latency_matrix() -> dict[str, dict[str, float]]:
    """Modelled one-way latency in ms between hubs (symmetric, zero diagonal)."""
    return {
        a.id: {
            b.id: 0.0 if a.id == b.id else _latency(_km(a.lat, a.lon, b.lat, b.lon)) for b in HUBS.values()
        }
        for a in HUBS.values()
    }


def latency_ms(province: str, cluster: str) -> float:
    """Modelled one-way latency from a province's capital (where its data sits) to a cluster."""
    p, c = PROVINCES[province], CLUSTERS[cluster]
    return _latency(_km(p.lat, p.lon, c.lat, c.lon))


def solar_shape(hour: int) -> float:
    return max(0.0, math.sin(math.pi * ((hour % 24) - 6) / 12))


def hourly_factor(province: str, hour: int) -> float:
    """Modelled grid intensity (tCO2/MWh) at local ``hour``; the daily mean is the MEE annual factor."""
    p = PROVINCES[province]
    a = SOLAR_SHARE.get(province, DEFAULT_SOLAR_SHARE)
    return p.grid_factor * (1.0 - a * (solar_shape(hour) - 1.0 / math.pi))


def province_of_registry_id(registry_id: str) -> str | None:
    """The province of a Chinese unified social credit code (chars 3–4 are the division's province)."""
    if len(registry_id) == 18:
        p = BY_DIVISION.get(registry_id[2:4])
        return None if p is None else p.code
    return None


def kg_co2(core_hours: float, *, pue: float, factor: float, green_share: float, watts: float) -> float:
    """Emissions of ``core_hours``: energy (kWh) = core-hours × W/1000 × PUE; × factor × (1 − green)."""
    return core_hours * watts / 1000.0 * pue * factor * (1.0 - green_share)


def energy_kwh(core_hours: float, *, pue: float, watts: float) -> float:
    return core_hours * watts / 1000.0 * pue


def as_json() -> dict[str, object]:
    """The whole topology (the ``GET /compute/topology`` document)."""
    return {
        "version": VERSION,
        "sources": SOURCES,
        "modelled": MODELLED,
        "national_factor": NATIONAL_FACTOR,
        "regional_factors": REGIONAL_FACTORS,
        "latency_target_ms": LATENCY_TARGET_MS,
        "hubs": [h.__dict__ for h in HUBS.values()],
        "clusters": [
            {**c.__dict__, "provinces": list(c.provinces), "west": c.west, "pue_target": c.pue_target}
            for c in CLUSTERS.values()
        ],
        "provinces": [p.__dict__ for p in PROVINCES.values()],
        "latency_ms": latency_matrix(),
    }
