"""The checks read Chinese (matching/checks_zh.py): each fails on a contradiction and passes a paraphrase."""

from __future__ import annotations

import pytest

from semcache.matching.checks import CHECKS, analyze, run_checks
from semcache.matching.checks_zh import ZH_CHECKS, analyze_zh, chinese_number
from semcache.matching.policy import MatchPolicy

# (check, a contradiction, a paraphrase): the first pair must fail the check, the second pass it.
CASES = [
    ("numbers", ("我想买三个苹果", "我想买五个苹果"), ("我想买三个苹果", "我想买3个苹果")),
    ("numbers", ("两个人怎么玩这个游戏", "四个人怎么玩这个游戏"), ("两个人怎么玩这个游戏", "2个人怎么玩这个游戏")),
    ("numbers", ("十五岁可以打工吗", "十六岁可以打工吗"), ("十五岁可以打工吗", "15岁能打工吗")),
    ("numbers", ("1万块钱能买什么", "2万块钱能买什么"), ("1万块钱能买什么", "一万元能买什么")),
    ("numbers", ("3.5亿是多少个零", "4.5亿是多少个零"), ("3.5亿是多少个零", "三亿五千万是多少个零")),
    ("numbers", ("第一次见面送什么礼物", "第二次见面送什么礼物"), ("第一次见面送什么礼物", "第1次见面该送什么礼物")),
    ("units", ("5公里要走多久", "5英里要走多久"), ("5公里要走多久", "5千米要走多久")),
    ("units", ("100元等于多少日元", "100美元等于多少日元"), ("100元等于多少日元", "100块等于多少日元")),
    ("negation", ("孕妇可以吃螃蟹吗", "孕妇不可以吃螃蟹吗"), ("孕妇能不能吃螃蟹", "孕妇可以吃螃蟹吗")),
    ("negation", ("手机有信号怎么办", "手机没有信号怎么办"), ("手机没有信号怎么办", "手机没信号了怎么办")),
    ("negation", ("这个游戏好玩吗", "这个游戏不好玩吗"), ("这两个有什么区别", "这两个的区别是什么")),
    ("negation", ("晚上可以喝咖啡吗", "晚上别喝咖啡吗"), ("我的电脑无法开机", "我的电脑开不了机怎么办")),
    ("time", ("今天北京天气怎么样", "明天北京天气怎么样"), ("今天北京天气怎么样", "现在北京天气如何")),
    ("time", ("今年春节是几号", "去年春节是几号"), ("今年春节是几号", "今年的春节在哪天")),
    ("time", ("本周五下午开会", "本周四下午开会"), ("本周五下午开会", "这周五下午开会吗")),
    ("negation", ("明天的会我能去", "明天的会我去不了"), ("明天的会我去不了", "明天的会我不能去")),
    ("order", ("python 字符串转int", "python int转字符串"), ("订阅从按年换成按月", "订阅怎么从按年换成按月")),
    ("measures", ("长江全长多少公里", "长江全长多少英里"), ("长江全长多少公里", "长江有多少公里长")),
    ("measures", ("距离过年还有多少天", "距离过年还有多少小时"), ("借款后多久打电话", "借款后多长时间打电话")),
    ("measures", ("长江有多长", "长江有多宽"), ("本金一万年利率3%", "本金一万年化3%")),
    ("measures", ("Python如何获取当前时间的时间戳（秒）", "Python如何获取当前时间的时间戳（毫秒）"),
     ("时间戳以秒为单位怎么获取", "怎么获取以秒为单位的时间戳")),
    ("measures", ("接口耗时以毫秒为单位吗", "接口耗时以秒为单位吗"), ("所以天气预报准吗", "天气预报准吗")),
    ("entities", ("把这句话翻译成日文", "把这句话翻译成中文"), ("把这句话翻译成英文", "这句话用英语怎么说")),
    ("entities", ("北京有什么好吃的", "上海有什么好吃的"), ("美国的首都是哪里", "美国首都是哪个城市")),
    ("opposites", ("离太阳最远的行星", "离太阳最近的行星"), ("最近有什么好看的电影", "最近有啥好看的电影")),
    ("opposites", ("123乘以45等于多少", "123除以45等于多少"), ("123乘以45等于多少", "123乘以45是多少")),
    ("numbers", ("准备十分钟汇报", "准备二十分钟汇报"), ("这件事十分重要", "这件事非常重要")),
    ("time", ("昨天的比赛谁赢了", "今天的比赛谁赢了"), ("今天的比赛谁赢了", "今晚的比赛谁赢了")),
    ("order", ("从北京到上海多远", "从上海到北京多远"), ("北京到上海多远", "从北京到上海有多远")),
    ("order", ("中文翻译成英文用什么软件", "英文翻译成中文用什么软件"), ("中文翻译成英文用什么软件", "把中文翻译成英文用什么软件")),
    ("opposites", ("大于5的数有哪些", "小于5的数有哪些"), ("大于5的数有哪些", "比5大的数有哪些")),
    ("opposites", ("世界上最大的国家", "世界上最小的国家"), ("世界上最大的国家", "世界上面积最大的国家是哪个")),
    ("opposites", ("python列表怎么升序排列", "python列表怎么降序排列"), ("python列表怎么升序排列", "python列表怎么从小到大排")),
    ("person", ("我该怎么办", "他该怎么办"), ("他为什么不理我", "他为啥不理我了")),
    ("person", ("我们什么时候放假", "他们什么时候放假"), ("你知道这首歌叫什么吗", "我想知道这首歌叫什么")),
    ("quoted", ("《红楼梦》的作者是谁", "《西游记》的作者是谁"), ("《红楼梦》的作者是谁", "《红楼梦》是谁写的")),
    ("quoted", ("“再见”用日语怎么说", "“谢谢”用日语怎么说"), ("《冬季到台北来看雨》阅读答案", "《冬季到台北看雨》阅读答案")),
    ("identifiers", ("python怎么给列表排序", "java怎么给列表排序"), ("python怎么给列表排序", "Python 列表如何排序")),
    ("identifiers", ("oppo r9s怎么截屏", "oppo r11怎么截屏"), ("用print_function有什么用", "print_function的作用是什么")),
]


def _check(name: str, a: str, b: str):
    return run_checks(analyze(a), analyze(b), (name,))[0]


@pytest.mark.parametrize("name, contradiction, paraphrase", CASES,
                         ids=[f"{name}-{i}" for i, (name, *_) in enumerate(CASES)])
def test_each_check_fails_a_contradiction_and_passes_a_paraphrase(name, contradiction, paraphrase):
    failed = _check(name, *contradiction)
    assert not failed.passed and failed.detail, f"{contradiction} should fail {name}"
    assert not _check(name, *reversed(contradiction)).passed  # both ways round
    assert _check(name, *paraphrase).passed, f"{paraphrase} should pass {name}: {_check(name, *paraphrase).detail}"
    assert _check(name, *reversed(paraphrase)).passed


@pytest.mark.parametrize("run, value", [("三", 3), ("两", 2), ("十五", 15), ("三百五十", 350), ("两千", 2000),
                                        ("一万五千", 15000), ("三亿五千万", 350_000_000), ("二〇二三", 2023),
                                        ("十万亿", 10**13), ("二十万", 200_000)])
def test_chinese_numerals_read_as_values(run, value):
    assert chinese_number(run) == value


def test_numbers_that_are_words_are_not_counted():
    # "一样" (the same), "万一" (in case), "千万" (by all means), "唯一" (only): no number at all.
    for text in ("这个和那个一样吗", "万一下雨怎么办", "千万不要这样做", "唯一的办法是什么", "等一下再说"):
        assert analyze_zh(text).numbers == (), text
    assert analyze_zh("五千万人口").numbers == ("50000000",)
    assert analyze_zh("百分之五十是多少").units == frozenset({("50", "%")})


def test_a_not_a_questions_are_not_negations():
    for text in ("手机能不能充电", "有没有好办法", "是不是真的", "要不要带伞", "好不好吃"):
        assert analyze_zh(text).negations == (), text


def test_english_text_keeps_the_english_checks():
    assert analyze("how many apples").zh is None
    assert not _check("numbers", "5 apples", "6 apples").passed
    assert _check("person", "what should I do", "what should he do").passed  # Chinese only, for now
    assert set(ZH_CHECKS) <= set(CHECKS)


def test_the_chinese_policy_refuses_a_near_miss_and_serves_a_paraphrase():
    from semcache.engine.language_routes import chinese_policy

    policy = chinese_policy()
    sims = [0.99, 0.99]
    scores = policy.score_pairs(["我想买三个苹果", "今天北京天气怎么样"], ["我想买五个苹果", "今天北京天气如何"], sims)
    assert scores.tolist() == [-1.0, 0.99]
    assert policy.threshold < 0.99
    assert isinstance(policy, MatchPolicy) and "person" in policy.checks
