"""Thanks and "not taken today" recognised as whole messages; anything more is a report."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trial.intents import is_acknowledgement, says_dose_not_taken

ACKNOWLEDGEMENTS = [
    "好的", "好的 谢谢", "收到", "谢谢医生", "嗯嗯", "ok", "ok thanks", "thank you", "👍",
    "got it", "OK!", "好的，谢谢医生🙏", "Thanks so much doctor", "謝謝", "👍🏻",
    "okay thank you very much", "好滴~", "谢谢您", "ok 👍", "Thank you!", "thx", "收到，谢谢",
    "🙏🙏",
]
NOT_ACKNOWLEDGEMENTS = [
    "ok but I have chest pain", "好痛", "好多了吗", "我胸痛", "fever", "", "？",
    "好的，我明天去医院", "thanks, I have a fever", "okra", "对不起", "🤒", "not ok",
    "谢谢，头很痛", "ok 38.9",
]
NOT_TAKEN = [
    "今天的药忘了吃", "今天还没吃药", "忘记吃药了", "didn't take it today",
    "forgot my pills today", "haven't taken my medicine", "我忘了吃药", "药还没吃",
    "I forgot to take my meds", "I missed my dose today", "did not take my medication today",
    "今天忘吃药了", "Didn’t take it today", "我妈今天的药忘了吃", "今天没吃药",
    "今天的藥忘了吃",
]
NOT_A_MISSED_DOSE = [
    "吃过了", "我没忘记吃药", "药吃完了一直没去拿", "我不想吃药了",
    "I stopped taking my pills", "haven't taken my medicine for 3 days",
    "should I take it if I forgot?", "I took it twice", "ran out of pills", "我今天头痛",
    "要是忘了吃药怎么办", "took my medicine", "好几天没吃药了",
]


@pytest.mark.parametrize("text", ACKNOWLEDGEMENTS)
def test_acknowledgements(text: str) -> None:
    assert is_acknowledgement(text)


@pytest.mark.parametrize("text", NOT_ACKNOWLEDGEMENTS)
def test_more_than_an_acknowledgement_is_not_one(text: str) -> None:
    assert not is_acknowledgement(text)


@pytest.mark.parametrize("text", NOT_TAKEN)
def test_todays_dose_not_taken(text: str) -> None:
    assert says_dose_not_taken(text)


@pytest.mark.parametrize("text", NOT_A_MISSED_DOSE)
def test_stopping_running_out_and_questions_are_not_a_missed_dose(text: str) -> None:
    assert not says_dose_not_taken(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_never_raises(text: str) -> None:
    assert is_acknowledgement(text) in (True, False)
    assert says_dose_not_taken(text) in (True, False)
