"""Settings -> parts: the policy's overrides."""

from __future__ import annotations

import pytest

from semcache.config import Settings
from semcache.errors import ConfigError
from semcache.matching.policy import MatchPolicy
from semcache.wiring import policy_from_settings


def test_semantic_languages_override_the_policys():
    assert policy_from_settings(Settings()).languages == MatchPolicy().languages == ("en",)
    assert policy_from_settings(Settings(semantic_languages=("en", "es"))).languages == ("en", "es")
    assert policy_from_settings(Settings(semantic_languages=("all",))).languages == ()  # every language
    assert Settings.load(environ={"SEMCACHE_SEMANTIC_LANGUAGES": "en,zh"}).semantic_languages == ("en", "zh")


def test_threshold_override_and_policy_file(tmp_path):
    path = tmp_path / "p.json"
    MatchPolicy(threshold=0.7, checks=("numbers",)).save(path)
    policy = policy_from_settings(Settings(policy=str(path), threshold=0.9))
    assert (policy.threshold, policy.checks) == (0.9, ("numbers",))
    with pytest.raises(ConfigError, match="threshold"):
        policy_from_settings(Settings(threshold=1.5))  # a cosine is at most 1
