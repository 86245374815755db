"""Body temperatures as people type them, in Chinese and English; never raises on any input."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

LOWEST_C = 34.0
HIGHEST_C = 43.0
_LOWEST_F = 93.2
_HIGHEST_F = 109.4

_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
           "七": 7, "八": 8, "九": 9}
_CN_NUMBER = re.compile(r"[零〇一二两三四五六七八九十]+")

# Words near a number that make it a temperature even without a unit or decimal point.
_CONTEXT = re.compile(r"体温|温度|发烧|发热|高烧|低烧|烧到|烧了|量了|temp|fever|febrile|°|℃|度")
# Words just before a number that make it something else (weight, age, blood pressure, money).
_OTHER_BEFORE = re.compile(
    r"(体重|重|岁|年龄|血压|心率|脉搏|血糖|血氧|weight|weigh|age|bp|pulse|heart rate|hr|sugar|"
    r"glucose|spo2|sats?|room|房间|[¥$￥€£#])\s*[:：=]?\s*(is|of|was|about|约|大约|是)?\s*$")
# Units just after a number that make it something other than a temperature.
_OTHER_AFTER = re.compile(
    r"\s*(次|回|遍|岁|公斤|斤|千克|克|元|块|号|日|月|年|分|秒|小时|天|周|粒|片|颗|毫|%|"
    r"x\b|times\b|time\b|kg|g\b|mg|ml|cm|mm|lbs?\b|years?\b|yrs?\b|yo\b|bpm|mmhg|am\b|pm\b|"
    r"mins?\b|minutes?\b|hours?\b|hrs?\b|h\b|days?\b|weeks?\b|[:/])")

_NUMBER = re.compile(
    # A separator after a digit joins a date, time or list ("2026.03.08", "10:38", "37,38,39");
    # after a word it is punctuation ("头痛，39.1度", "体温：38.7" once folded to ASCII).
    r"(?<!\d)(?<!\d[.,:/\-])(\d{2,3})(?:(?:[.,]|\s*点\s*)(\d{1,2}))?"
    r"(?!\d)(?![.,]\d)"  # 38.5.2 or 37,38,39: a date or a list, not a reading
    r"(?:(度)(\d)(?![\d.]|\s*次)"  # 38度5
    r"|\s*(°\s*[cf]?|degrees?(?:\s*[cf](?![a-z]))?|deg\b|摄氏度|华氏度|度|[cf](?![a-z])))?")


@dataclass(frozen=True)
class Reading:
    """One temperature found in a text."""

    celsius: float
    text: str  # the characters it was read from
    fahrenheit: bool = False


def _cn_to_int(numeral: str) -> int | None:
    """三十八 -> 38, 十 -> 10, 五 -> 5, 一零一 -> 101; None when it is not a number."""
    if "十" not in numeral:
        value = 0
        for char in numeral:
            value = value * 10 + _DIGITS[char]
        return value
    tens, _, units = numeral.partition("十")
    if "十" in units or len(tens) > 1 or len(units) > 1:
        return None
    return (_DIGITS[tens] if tens else 1) * 10 + (_DIGITS[units] if units else 0)


def _arabic(text: str) -> str:
    """Chinese numerals as digits, so 三十八度五 reads like 38度5 (only for reading numbers)."""

    def repl(match: re.Match[str]) -> str:
        value = _cn_to_int(match.group(0))
        return match.group(0) if value is None else str(value)

    return _CN_NUMBER.sub(repl, text.replace("度半", "度5").replace("点半", "点5"))


def fold(text: str) -> str:
    """Full-width to half-width, one case, one kind of apostrophe."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return folded.replace("’", "'").replace("‘", "'").replace("，", ",").replace("。", ".")


def _celsius(whole: str, fraction: str | None, unit: str,
             about_temperature: bool) -> tuple[float, bool] | None:
    value = float(f"{int(whole)}.{fraction}" if fraction else whole)
    unit = unit.replace(" ", "")
    if unit.endswith("f") or unit == "华氏度":
        if not _LOWEST_F <= value <= _HIGHEST_F:
            return None
        return round((value - 32) * 5 / 9, 1), True
    if LOWEST_C <= value <= HIGHEST_C:
        return round(value, 1), False
    if unit.startswith(("deg", "°")) and _LOWEST_F <= value <= _HIGHEST_F:
        return round((value - 32) * 5 / 9, 1), True  # "101 degrees"
    if not unit and fraction and about_temperature and _LOWEST_F <= value <= _HIGHEST_F:
        return round((value - 32) * 5 / 9, 1), True  # "temp 101.3": Fahrenheit by its size
    return None


def readings(text: str, *, expect_temperature: bool = False) -> list[Reading]:
    """Every plausible temperature in a text (34-43 C); `expect_temperature` accepts bare 38."""
    try:
        return _readings(text, expect_temperature)
    except Exception:  # a parser of untrusted text must never take the conversation down
        return []


def _readings(text: str, expect_temperature: bool) -> list[Reading]:
    folded = _arabic(fold(text))[:10_000]
    found: list[Reading] = []
    for match in _NUMBER.finditer(folded):
        whole, fraction, du, du_fraction, unit_part = match.group(1, 2, 3, 4, 5)
        unit = du or (unit_part or "").strip()
        if du and not fraction:
            fraction = du_fraction
        before = folded[max(0, match.start() - 16):match.start()]
        after = folded[match.end():match.end() + 8]
        if not unit and (_OTHER_BEFORE.search(before) or _OTHER_AFTER.match(after)):
            continue
        window = folded[max(0, match.start() - 8):match.end() + 4]
        about_temperature = expect_temperature or bool(_CONTEXT.search(window))
        if not unit and not fraction and not about_temperature:
            continue  # a bare "38" is a reading only when the text is about temperature
        value = _celsius(whole, fraction, unit, about_temperature)
        if value is None:
            continue
        found.append(Reading(value[0], match.group(0).strip(), value[1]))
    return found


def highest(text: str, *, expect_temperature: bool = False) -> Reading | None:
    """The highest plausible temperature in a text, or None."""
    found = readings(text, expect_temperature=expect_temperature)
    return max(found, key=lambda r: r.celsius) if found else None
