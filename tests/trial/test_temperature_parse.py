"""Temperatures as people type them; dates, times, phones and counts are not temperatures."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trial.temperature import highest, readings

READINGS = [
    ("38.5", 38.5), ("38,5", 38.5), ("38.5C", 38.5), ("38.5℃", 38.5), ("38.5°C", 38.5),
    ("101.3F", 38.5), ("101.3 °F", 38.5), ("38度5", 38.5), ("三十八度五", 38.5), ("38度", 38.0),
    ("体温38.6", 38.6), ("发烧38.6度", 38.6), ("三十七点八度", 37.8), ("烧到39度半", 39.5),
    ("temp 101.3", 38.5), ("fever 38", 38.0), ("３８．５", 38.5), ("１０１．３Ｆ", 38.5),
    ("38 degrees", 38.0), ("it was 38.2 then 39.1", 39.1), ("15:30 38.2", 38.2),
    ("体温37.2，拉了8次", 37.2), ("38c", 38.0),
    # after full-width punctuation (folded to ASCII before reading)
    ("头痛，39.1度", 39.1), ("体温：38.7", 38.7), ("发烧了，38.6度", 38.6),
    ("发烧了。38.6度", 38.6), ("量了一下；38.4度", 38.4), ("体温、38.2", 38.2),
    ("temp:38.7", 38.7), ("fever,38.6", 38.6), ("头痛,39.1度", 39.1),
]
NOT_READINGS = [
    "2026.03.02", "10:38", "13838512345", "拉了38次", "体重40.5kg", "38.5.2", "37,38,39",
    "38, 5 times", "38", "I am 38 years old", "38.5 mg", "¥38.5", "38.5%", "bp 120/80", "hr 40.5",
    "98.6", "45.5", "33.9", "3月8日", "7 times", "",
    # dates, times and lists written with full-width punctuation
    "37，38，39", "２０２６．０３．０８", "2026。03。08", "10：38", "下午3：38", "37-38-39",
]


@pytest.mark.parametrize(("text", "celsius"), READINGS)
def test_reads_temperatures(text: str, celsius: float) -> None:
    reading = highest(text)
    assert reading is not None
    assert reading.celsius == celsius


@pytest.mark.parametrize("text", NOT_READINGS)
def test_rejects_what_is_not_a_temperature(text: str) -> None:
    assert readings(text) == []


def test_bare_number_when_a_temperature_is_expected() -> None:
    reading = highest("38", expect_temperature=True)
    assert reading is not None
    assert reading.celsius == 38.0
    assert highest("7", expect_temperature=True) is None


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_never_raises_and_stays_plausible(text: str) -> None:
    for reading in readings(text):
        assert 34.0 <= reading.celsius <= 43.0
