"""The China channels' settings are checked once, by the rules every channel's settings share."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from engage.config import Settings

GOOD_KEY = "a" * 43  # 43 base64 characters: 32 bytes once '=' is added


@pytest.mark.parametrize(("field", "value", "message"), [
    ("wechat_api_url", "ftp://api.weixin.qq.com", "http:// or https://"),
    ("wecom_api_url", "qyapi.weixin.qq.com", "http:// or https://"),
    ("wechat_aes_key", "too-short", "43-character EncodingAESKey"),
    ("wecom_aes_key", GOOD_KEY + "b", "43-character EncodingAESKey"),
])
def test_a_bad_channel_setting_is_refused_with_its_rule(field: str, value: str,
                                                        message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(**{field: value})  # type: ignore[arg-type]


def test_good_channel_settings_are_kept_without_a_trailing_slash() -> None:
    settings = Settings(wechat_api_url="http://127.0.0.1:9/",
                        wechat_aes_key=GOOD_KEY)  # type: ignore[arg-type]
    assert settings.wechat_api_url == "http://127.0.0.1:9"
    assert settings.wechat_aes_key is not None
    assert settings.wechat_aes_key.get_secret_value() == GOOD_KEY
