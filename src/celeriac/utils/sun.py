"""When the sun crosses a given altitude, from NOAA's solar position equations.

The equations are those of NOAA's solar calculator (after Meeus, "Astronomical Algorithms"):
the sun's declination and the equation of time for an instant, then the hour angle at
which the sun's centre stands at the wanted altitude. Each event is computed again at its
own estimated instant, which brings it within a few seconds of a full ephemeris at mid
latitudes.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone

__all__ = ["event_after", "event_on"]

_J2000_UTC = datetime(2000, 1, 1, 12, tzinfo=timezone.utc)
_SEARCH_DAYS = 370  # past a year, an event that has not happened never will here


def _julian_century(when: datetime) -> float:
    days = (when - _J2000_UTC).total_seconds() / 86400.0
    return days / 36525.0


def _declination_and_equation_of_time(when: datetime) -> tuple[float, float]:
    """The sun's declination (degrees) and the equation of time (minutes) at *when*."""
    t = _julian_century(when)
    mean_long = (280.46646 + t * (36000.76983 + t * 0.0003032)) % 360
    mean_anom = 357.52911 + t * (35999.05029 - 0.0001537 * t)
    ecc = 0.016708634 - t * (0.000042037 + 0.0000001267 * t)
    m = math.radians(mean_anom)
    center = (
        math.sin(m) * (1.914602 - t * (0.004817 + 0.000014 * t))
        + math.sin(2 * m) * (0.019993 - 0.000101 * t)
        + math.sin(3 * m) * 0.000289
    )
    true_long = mean_long + center
    omega = math.radians(125.04 - 1934.136 * t)
    apparent_long = true_long - 0.00569 - 0.00478 * math.sin(omega)
    mean_obliq = 23 + (26 + (21.448 - t * (46.815 + t * (0.00059 - t * 0.001813))) / 60) / 60
    obliq = math.radians(mean_obliq + 0.00256 * math.cos(omega))
    declination = math.degrees(math.asin(math.sin(obliq) * math.sin(math.radians(apparent_long))))
    y = math.tan(obliq / 2) ** 2
    l0 = math.radians(mean_long)
    eq_time = 4 * math.degrees(
        y * math.sin(2 * l0)
        - 2 * ecc * math.sin(m)
        + 4 * ecc * y * math.sin(m) * math.cos(2 * l0)
        - 0.5 * y * y * math.sin(4 * l0)
        - 1.25 * ecc * ecc * math.sin(2 * m)
    )
    return declination, eq_time


def _hour_angle_deg(latitude: float, declination: float, altitude: float) -> float | None:
    """Hours angle (degrees) at which the sun's centre is at *altitude*, None if it never is."""
    lat, dec = math.radians(latitude), math.radians(declination)
    cos_ha = (math.sin(math.radians(altitude)) - math.sin(lat) * math.sin(dec)) / (
        math.cos(lat) * math.cos(dec)
    )
    if cos_ha < -1 or cos_ha > 1:
        return None
    return math.degrees(math.acos(cos_ha))


def event_on(
    day: date, latitude: float, longitude: float, altitude: float | None, rising: bool
) -> datetime | None:
    """The UTC instant of one event in the solar day around noon of *day* at *longitude*.

    *altitude* None means solar noon (the transit); otherwise the sun's centre crosses
    *altitude* degrees, rising in the morning or setting in the evening. None when the sun
    does not reach that altitude that day.
    """
    noon_guess = datetime(day.year, day.month, day.day, 12, tzinfo=timezone.utc) - timedelta(
        minutes=4 * longitude
    )
    when = noon_guess
    for _ in range(3):  # each pass evaluates the sun where the event was last estimated
        declination, eq_time = _declination_and_equation_of_time(when)
        offset_min = -4 * longitude - eq_time
        if altitude is not None:
            hour_angle = _hour_angle_deg(latitude, declination, altitude)
            if hour_angle is None:
                return None
            offset_min += -4 * hour_angle if rising else 4 * hour_angle
        midnight = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
        when = midnight + timedelta(minutes=720 + offset_min)
    return when


def event_after(
    after: datetime, latitude: float, longitude: float, altitude: float | None, rising: bool
) -> datetime | None:
    """The first event strictly after *after* (aware), or None within a year's search."""
    start = after.astimezone(timezone.utc).date() - timedelta(days=1)
    for offset in range(_SEARCH_DAYS):
        found = event_on(start + timedelta(days=offset), latitude, longitude, altitude, rising)
        if found is not None and found > after:
            return found
    return None
