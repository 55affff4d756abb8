"""The dashboard's template environment: filters and what every page may use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from markupsafe import Markup, escape

from service.sweeps.statistics import MAXIMIZE
from service.web.client_wheel import install_line
from service.web.dashboard.data import age
from service.web.dashboard.parameters import title
from service.web.dashboard.scale import colour, legend_stops, mean_ci, number, param_text
from service.web.dashboard.security import csrf_token, signed_in
from service.web.keys import SETTINGS

SERVICE_DIR = Path(__file__).resolve().parent.parent
STATIC_DIR = SERVICE_DIR / "static"


def accuracy(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def percent(value: float | None) -> float:
    """A share in [0, 1] as a CSS width in percent, clamped (an unknown share is 0)."""
    return round(100 * min(1.0, max(0.0, value or 0.0)), 1)


def _rounded(value: Any) -> bool:
    """Whether four significant digits leave out digits of the value (a draw from a range:
    0.0028760196660332984 shows as 0.002876); only a float is ever rounded."""
    return isinstance(value, float) and float(param_text(value)) != value


def _titled(shown: str, exact: str | None) -> Markup:
    """`shown`, with the exact text as its title (a tooltip) when there is one."""
    if exact is None:
        return escape(shown)
    return Markup('<span title="{}">{}</span>').format(exact, shown)


def param(value: Any) -> Markup:
    return _titled(param_text(value), str(value) if _rounded(value) else None)


def exact_params(value: dict[str, Any]) -> str:
    """Every parameter in the order the run has them (the grid's), each value exact."""
    return " · ".join(f"{key}={_exact(item)}" for key, item in value.items())


def _exact(value: Any) -> str:
    """A value with all its digits (a float's repr), a boolean as the JSON a script gets."""
    return repr(value) if isinstance(value, float) else param_text(value)


def params(value: dict[str, Any]) -> Markup:
    """i=0.002876 · j=2 · k=300 (any names, in the grid's order), the exact values as a title
    when rounded."""
    shown = " · ".join(f"{key}={param_text(item)}" for key, item in value.items())
    rounded = any(_rounded(item) for item in value.values())
    return _titled(shown, exact_params(value) if rounded else None)


def config_mean(config: dict[str, Any]) -> str:
    """A configuration's mean, ± the half-width of its 95% interval when it has one (an
    interval of no width says so: it is no certainty, its seeds all gave the same value)."""
    if config["ci95"] and config.get("no_variance"):
        return f"{number(config['mean'])} ± 0 (every seed the same)"
    return mean_ci(config["mean"], config["ci95"])


def p_value(value: float) -> str:
    """A p-value after "p": "= 0.003", "= 0.41", "< 0.001"."""
    return "< 0.001" if value < 0.001 else f"= {value:.2g}"


def direction(value: str) -> str:
    return "maximised" if value == MAXIMIZE else "minimised"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    return f"{minutes // 60} h {minutes % 60} min"


async def _page_context(request: web.Request) -> dict[str, Any]:
    return {"csrf": csrf_token(request), "signed_in": signed_in(request),
            "token_required": bool(request.app[SETTINGS].api_token), "colour": colour,
            "legend_stops": legend_stops, "param_title": title,
            "client_install": install_line(request)}


def setup_templates(app: web.Application) -> None:
    environment = aiohttp_jinja2.setup(
        app, loader=jinja2.FileSystemLoader(SERVICE_DIR / "templates"),
        autoescape=jinja2.select_autoescape(default=True, default_for_string=True),
        context_processors=[_page_context], trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(acc=accuracy, percent=percent, params=params,
                               param=param, exact_params=exact_params,
                               duration=duration, when=age, num=number,
                               mean_ci=config_mean, p_value=p_value, direction=direction,
                               param_text=param_text)
    environment.tests.update(rounded=_rounded)
