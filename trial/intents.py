"""What a short message means when it is not a symptom report: thanks, or today's dose not taken.

Pure and total (never raises). Each recogniser needs the whole message to be of its kind: "ok but
I have chest pain" is a report, and so is anything a recogniser does not fully understand.
"""

from __future__ import annotations

import re

from trial.temperature import fold

# Acknowledgements and thanks, and the words that may come with them ("谢谢医生", "ok thanks
# doctor"). A message is an acknowledgement when it is made of nothing else.
_ACK_PHRASES = (
    # Chinese (simplified; traditional forms are listed where they differ)
    "好的", "好滴", "好哒", "好嘞", "好啊", "好", "收到", "谢谢", "謝謝", "多谢", "多謝", "感谢",
    "感謝", "非常感谢", "非常感謝", "嗯嗯", "嗯", "恩恩", "哦哦", "哦", "噢", "知道了", "明白了",
    "明白", "了解", "懂了", "行", "可以", "没问题", "沒問題", "是的", "对", "好的呢", "辛苦了",
    "辛苦", "麻烦了", "麻煩了", "ok了", "好吧",
    # English
    "ok", "okay", "okey", "okie", "k", "kk", "thanks", "thank you", "thankyou", "thanx", "thx",
    "ty", "tq", "got it", "noted", "sure", "alright", "all right", "great", "cool", "fine",
    "will do", "understood", "perfect", "cheers", "many thanks", "appreciated", "yes", "yep",
    "yeah", "sounds good", "good", "i see", "i understand", "roger",
)
# Words that only go with an acknowledgement: who is thanked, how much.
_ACK_COMPANIONS = (
    "医生", "醫生", "大夫", "老师", "老師", "护士", "護士", "您", "你", "你们", "你們", "啦", "了",
    "呀", "哈", "哈哈", "呢", "啊", "的", "哒", "哦",
    "doctor", "doc", "dr", "nurse", "so much", "very much", "a lot", "lots", "you", "again",
    "so", "very", "much", "for that", "for the reminder", "for reminding me", "team", "all",
)
# Emoji and marks that say "ok" or "thanks" on their own; modifiers and joiners are dropped.
_ACK_EMOJI = "👍👌🙏😊🙂☺😀😃😄😁🤝✅✔❤💕🌹💐👏🫡💪😘🥰"
_EMOJI_MODIFIERS = re.compile("[\U0001f3fb-\U0001f3ff\ufe0f\ufe0e\u200d]")
_SEPARATORS = r"[\s,.!?~…，。！？、;；:：\-—~～'\"()（）]*"


def _alternation(phrases: tuple[str, ...]) -> str:
    # Longest first, so "thank you" is not read as "thank" then an unknown "you".
    ordered = sorted({fold(p) for p in phrases}, key=len, reverse=True)
    return "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in ordered)


# An English word must end at a word boundary ("ok" is not the start of "okra").
_ACK_TOKEN = rf"(?:{_alternation(_ACK_PHRASES)})(?![a-z])"
_COMPANION_TOKEN = rf"(?:{_alternation(_ACK_COMPANIONS)})(?![a-z])"
_ACKNOWLEDGEMENT = re.compile(
    rf"{_SEPARATORS}(?:{_ACK_TOKEN}{_SEPARATORS})+(?:(?:{_COMPANION_TOKEN}|{_ACK_TOKEN})"
    rf"{_SEPARATORS})*")


def _plain(text: str) -> str:
    """Folded text without the emoji that mean ok; None of the meaning is lost."""
    folded = _EMOJI_MODIFIERS.sub("", fold(text))
    return folded.translate({ord(e): " " for e in _ACK_EMOJI}).strip()


def is_acknowledgement(text: str) -> bool:
    """Whether the whole message is thanks or an "ok" (好的 谢谢, ok thanks, 👍), nothing more."""
    try:
        if len(text) > 200:
            return False
        plain = _plain(text)
        if not plain:  # only ack emoji ("👍", "🙏🙏"): an empty message is not one
            return bool(fold(text).strip()) and not any(c.isalnum() for c in text)
        return _ACKNOWLEDGEMENT.fullmatch(plain) is not None
    except Exception:  # a recogniser of untrusted text must never take the conversation down
        return False


# Today's dose not taken, in the patient's or a family member's words. Each pattern names a
# failure to take (forgot, not yet, didn't) and the taking or the medicine itself.
_MEDICINE_ZH = r"(?:药|藥|胶囊|膠囊|药片|藥片)"
_NOT_TAKEN_ZH = re.compile(
    rf"(?:忘了|忘记|忘記|忘|漏|还没|還沒|没|沒|没有|沒有|未)(?:有)?(?:吃|服|服用|吃上)(?:了)?"
    rf"(?:{_MEDICINE_ZH}|今天的{_MEDICINE_ZH})"
    rf"|{_MEDICINE_ZH}(?:今天)?(?:忘了|忘记|忘記|忘|还没|還沒|没|沒|没有|沒有|漏)(?:有)?(?:吃|服)"
    rf"|(?:忘了|忘记|忘記|漏)(?:吃|服)(?:了)?(?:今天|$|了|啊|呀|。|！|!|\.)"
    rf"|(?:今天|今日)(?:的)?(?:{_MEDICINE_ZH})?(?:还|還)?(?:没|沒|没有|沒有|未)(?:有)?(?:吃|服)")
_MEDICINE_EN = (r"(?:it|them|my (?:pills?|medicines?|medications?|meds|capsules?|dose|tablets?)|"
                r"(?:the|today's|todays|this morning's|tonight's) (?:pills?|medicines?|"
                r"medications?|meds|capsules?|dose|tablets?)|pills?|medicines?|medications?|"
                r"meds|capsules?|dose|tablets?)")
_NOT_TAKEN_EN = re.compile(
    rf"\b(?:didn'?t|did not|didnt|haven'?t|have not|havent|hasn'?t|has not|not yet|forgot to|"
    rf"forgot|forgotten to|forget to|forget|missed|skipped|i missed|not)\s+(?:yet\s+)?"
    rf"(?:take|taken|took|taking|had|have|to take)?\s*(?:{_MEDICINE_EN})\b"
    rf"|\b(?:{_MEDICINE_EN}) (?:not taken|not yet taken)\b"
    rf"|\bforgot (?:to take )?(?:it|them)?\s*today\b")
# Words that make it something else: stopping, running out, several days, a question, a double
# dose. Those are reports (stopped medication is same-day) or questions for the study team.
_NOT_A_MISSED_DOSE = re.compile(
    r"停|不吃了|不想吃|不敢吃|不肯吃|吃完|没药|沒藥|断药|斷藥|几天|幾天|好几|一直|两天|三天|\d+\s*天|"
    r"一周|一星期|礼拜|多吃|吃了两|吃两|吃多|重复|双倍|要不要|能不能|可以|怎么办|怎麼辦|吗|嗎|\?|？|"
    r"\bstop|\bquit|ran out|run out|anymore|any more|\bdays\b|\bweek|\btwice|\bdouble|\bextra|"
    r"\bshould i|\bcan i|\bwhat (?:do|should)|\bif\b|\bwhether\b|\bnot sure\b|\bdon'?t know\b|"
    r"\bnever\b|\bon purpose\b|\brefuse")
# Already taken ("吃过了", "没忘记吃药"): a double negative is not a missed dose.
_NOT_FORGOTTEN = re.compile(r"没忘|沒忘|没有忘|沒有忘|didn'?t forget|did not forget|吃过了|吃過了")


def says_dose_not_taken(text: str) -> bool:
    """Whether the message says today's dose was not taken ("今天的药忘了吃", "didn't take it
    today"), and nothing that makes it another matter (stopped, ran out, days, a question)."""
    try:
        if len(text) > 300:
            return False
        folded = fold(text).replace("’", "'")
        if _NOT_A_MISSED_DOSE.search(folded) or _NOT_FORGOTTEN.search(folded):
            return False
        return bool(_NOT_TAKEN_ZH.search(folded.replace(" ", "")) or _NOT_TAKEN_EN.search(folded))
    except Exception:  # never take the conversation down
        return False
