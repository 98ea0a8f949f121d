"""The contradiction checks, read in Chinese: numbers, units, negation, time, direction, comparison, person, literals.

Pure functions of two texts, used by ``checks.py``: a text with Chinese characters gets a
``ZhFacts`` (``analyze_zh``), and when *both* texts have one, each check registered here under a
name of ``checks.CHECKS`` runs instead of the English one of that name ("numbers": "三个" and
"3个" agree, "1万" and "10000"; "person" is Chinese only). As in English, a check fails only on a
contradiction -- both texts state the thing and disagree -- so a paraphrase that drops a detail
passes. Each comparison returns the reason it fails, or None.

Chinese has no spaces, so the extractors are patterns over characters with lists of the words
that look like a number, a negation or a pronoun and are not one (一样, 不错, 有没有, 其他): what
each check costs LCQMC's paraphrases is measured in benchmarks/results/chinese.json.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

__all__ = ["ZH_CHECKS", "ZhFacts", "analyze_zh", "chinese_number", "has_han", "multiset_minus"]

_HAN = re.compile(r"[\u4e00-\u9fff\u3400-\u4dbf]")
_DIGITS = {"零": 0, "〇": 0, "一": 1, "壹": 1, "二": 2, "贰": 2, "两": 2, "三": 3, "叁": 3, "四": 4, "肆": 4,
           "五": 5, "伍": 5, "六": 6, "陆": 6, "七": 7, "柒": 7, "八": 8, "捌": 8, "九": 9, "玖": 9}
_SMALL_UNITS = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
_BIG_UNITS = {"万": 10**4, "亿": 10**8}
_NUMERALS = "".join(_DIGITS) + "".join(_SMALL_UNITS) + "".join(_BIG_UNITS)
# A number: Arabic (full-width too) with an optional decimal part and 万/亿/千 after it, or a run of numerals.
_NUMBER = re.compile(rf"(?P<arabic>[0-9０-９]+(?:[.．][0-9０-９]+)?)(?P<mult>[万亿千百]*)|(?P<han>[{_NUMERALS}]+)")
# Words whose numerals are not a count ("一样" the same, "万一" in case, "千万" by all means, "一些" some).
_NOT_NUMBERS = ("一样", "一起", "一定", "一般", "一直", "一些", "一切", "一致", "一旦", "一向", "一律", "一下", "一点",
                "一边", "一会", "一时", "一再", "一味", "一路", "一心", "一同", "一生", "一辈子", "万一",
                "统一", "唯一", "之一", "一方面", "一模一样", "百度", "万能", "万达", "三星", "七夕",
                "百分百", "千兆", "一手", "一口气", "一次性", "三国", "四川", "一线", "二手", "九寨沟", "一元二次",
                "十足", "万物", "一家人", "一体", "一带一路", "一把手", "三明治", "八卦", "九阳", "五星", "一流")
_PERCENT = re.compile(r"百分之([零〇一二两三四五六七八九十百点]+)")
# Units after a number: the longest word first (公里 before 里).
_UNITS = {
    "公里": "km", "千米": "km", "英里": "mile", "海里": "nmi", "米": "m", "厘米": "cm", "毫米": "mm", "公分": "cm",
    "英尺": "ft", "英寸": "in", "寸": "cun", "公斤": "kg", "千克": "kg", "斤": "jin", "克": "g", "磅": "lb", "吨": "t",
    "毫升": "ml", "升": "l", "加仑": "gal", "元": "cny", "块钱": "cny", "块": "cny", "人民币": "cny", "美元": "usd",
    "美金": "usd", "欧元": "eur", "英镑": "gbp", "日元": "jpy", "港币": "hkd", "港元": "hkd", "韩元": "krw",
    "摄氏度": "C", "华氏度": "F", "度": "deg", "小时": "h", "个小时": "h", "分钟": "min", "秒": "s", "天": "day",
    "周": "week", "个星期": "week", "星期": "week", "个月": "month", "年": "year", "岁": "age", "%": "%", "倍": "times",
    "km": "km", "kg": "kg", "cm": "cm", "mm": "mm", "ml": "ml", "gb": "GB", "mb": "MB", "tb": "TB", "g": "GB",
}
_UNIT_WORDS = tuple(sorted(_UNITS, key=len, reverse=True))
# Measure words: a lone numeral before one is a count ("三个", "两本"), else often not a number at all.
_MEASURE = re.compile(r"[个只本块张条台辆部支把双对套种件位名次遍回层楼页章节集期届首句杯瓶碗份门所家间座棵头匹根粒颗点号月日人]")
_CURRENCY_BEFORE = {"¥": "cny", "￥": "cny", "$": "usd", "€": "eur", "£": "gbp"}
_NEGATIONS = ("没有", "不", "没", "无", "非", "别", "未", "勿", "莫", "甭")
# Not negations: set words with 不/没/无/非/别 in them, and "A不A" questions ("能不能", "有没有": whether).
_NOT_NEGATIONS = ("不错", "不过", "不少", "不同", "不断", "不管", "不仅", "不如", "不得不", "差不多", "了不起", "对不起",
                  "不好意思", "不然", "不但", "不论", "不久", "不一定", "非常", "非得", "无论", "无聊", "无线", "无人机",
                  "无锡", "并非", "别人", "别的", "特别", "区别", "分别", "告别", "类别", "级别", "性别", "识别", "辨别",
                  "鉴别", "离别", "无数", "无限", "无比", "非法", "是非", "非洲", "没准", "莫名", "不用谢",
                  "要不", "要不然", "不禁", "不妨", "无所谓", "不知道", "不清楚", "不懂", "不明白", "是否", "可否",
                  "能否", "与否", "不可思议", "万不得已", "不可或缺", "不止", "不只")
_COMPLEMENTS = set("了到起动上下出开完懂清住")
# A negation before a modal negates the verb after it ("不能吃": 吃); these characters are skipped.
_MODALS = "能可以会要该应是得敢愿肯想用"
_NEGATION_CHARS = set("不没无非别未勿莫甭")
_PARTICLES = set("吗呢吧啊呀的了么")
NEGATION_OVERLAP = 0.7
_A_NOT_A = re.compile(r"(.)[不没]\1|有没有|是不是|要不要|能不能|会不会|可不可以|好不好|对不对|行不行|用不用|该不该")
# Times by (granularity, offset): only two times of one granularity can disagree ("今天" vs "明天";
# "今天" vs "今年" do not); "现在" is offset 0 of every granularity.
_TIMES = {
    "大前天": (("day", -3),), "前天": (("day", -2),), "昨天": (("day", -1),), "昨晚": (("day", -1),), "昨日": (("day", -1),),
    "今天": (("day", 0),), "今日": (("day", 0),), "今晚": (("day", 0),), "今早": (("day", 0),), "明天": (("day", 1),),
    "明日": (("day", 1),), "明早": (("day", 1),), "明晚": (("day", 1),), "后天": (("day", 2),), "大后天": (("day", 3),),
    "上周": (("week", -1),), "上个星期": (("week", -1),), "上星期": (("week", -1),), "这周": (("week", 0),),
    "本周": (("week", 0),), "这个星期": (("week", 0),), "下周": (("week", 1),), "下个星期": (("week", 1),),
    "下星期": (("week", 1),), "上个月": (("month", -1),), "上月": (("month", -1),), "这个月": (("month", 0),),
    "本月": (("month", 0),), "下个月": (("month", 1),), "下月": (("month", 1),), "前年": (("year", -2),),
    "去年": (("year", -1),), "今年": (("year", 0),), "明年": (("year", 1),), "后年": (("year", 2),),
    **{f"{prefix}{day}": (("weekday", n),) for prefix in ("星期", "周", "礼拜") for n, day in
       enumerate("一二三四五六日", start=1)}, "星期天": (("weekday", 7),), "礼拜天": (("weekday", 7),),
    **{f"{prefix}{day}": (("week", offset), ("weekday", n)) for prefix, offset in (("上周", -1), ("本周", 0), ("这周", 0),
       ("下周", 1)) for n, day in enumerate("一二三四五六日", start=1)},
    "现在": (("day", 0), ("week", 0), ("month", 0), ("year", 0)), "目前": (("day", 0), ("week", 0), ("month", 0), ("year", 0)),
}
_TIME_WORDS = tuple(sorted(_TIMES, key=len, reverse=True))
# "从A到B", "A到B", "A翻译成B", "A换成B": the two ends, in order.
_END = r"[^\W_从由把将到至转改换]{1,6}?"
_DIRECTION = re.compile(rf"(?:从|由)?({_END})(?:到|至|飞往|开往|前往|去往|翻译成|翻译为|译成|转换成|转换为|转成|转为|换成|兑换成|兑换|变成|改成|改为|改|转)"
                        rf"({_END})(?=的|怎|多|要|坐|开|需|有|吗|哪|几|远|用|是|可|能|应|该|会|呢|大概|机票|火车|高铁|航班|飞机|路线|汇率|公式|[\s，,。？?！!]|$)")
_DIRECTION_PREFIX = ("请问", "我想", "怎么", "怎样", "如何", "把", "将", "从", "由")
# What is measured or asked about, with or without a number ("多少公里" vs "多少英里", "多长" vs "多宽"):
# multi-character units anywhere, one-character ones only after a number, 多少, 几 or 每 (天 is also sky).
_MEASURE_WORDS = {"公里": "km", "千米": "km", "英里": "mile", "海里": "nmi", "公斤": "kg", "千克": "kg", "英尺": "ft",
                  "英寸": "in", "摄氏度": "C", "华氏度": "F", "美元": "usd", "美金": "usd", "欧元": "eur", "英镑": "gbp",
                  "日元": "jpy", "人民币": "cny", "港币": "hkd", "小时": "h", "分钟": "min", "毫升": "ml", "厘米": "cm",
                  "毫米": "mm", "毫秒": "ms", "微秒": "us", "纳秒": "ns", "多长": "length", "多宽": "width", "多高": "height", "多深": "depth", "多重": "weight",
                  "多远": "distance", "年利率": "rate/year", "年化": "rate/year", "年息": "rate/year",
                  "月利率": "rate/month", "月息": "rate/month", "日利率": "rate/day", "日息": "rate/day"}
# How long, in no unit: "多长时间" asks what "多久" asks, and neither contradicts "几天".
_DURATION = ("多长时间", "多少时间")
# A one-character unit counts after a number, 多少, 几 or 每, and where it names the unit of an answer:
# "时间戳（秒）" vs "时间戳（毫秒）", "以秒为单位", "按天计算".
_MEASURE_AFTER = re.compile(r"(?:[0-9０-９]|多少|几|每|[（(]|单位[是为：:]?|以(?=.为单位)|按)(个)?([米斤磅克天秒元吨升周年岁])")
_MEASURE_SINGLE = {"米": "m", "斤": "jin", "磅": "lb", "克": "g", "天": "day", "秒": "s", "元": "cny", "吨": "t", "升": "l",
                   "周": "week", "年": "year", "岁": "age"}
_MEASURE_KEYS = tuple(sorted(_MEASURE_WORDS, key=len, reverse=True))
# Names whose swap changes the answer: languages and countries, with their other names.
_ENTITIES = {"中文": "zh", "汉语": "zh", "普通话": "zh", "英文": "en", "英语": "en", "日文": "ja", "日语": "ja", "韩文": "ko",
             "韩语": "ko", "法语": "fr", "法文": "fr", "德语": "de", "德文": "de", "俄语": "ru", "俄文": "ru",
             "西班牙语": "es", "西语": "es", "阿拉伯语": "ar", "粤语": "yue", "中国": "CN", "美国": "US", "日本": "JP",
             "韩国": "KR", "英国": "GB", "法国": "FR", "德国": "DE", "俄罗斯": "RU", "印度": "IN", "加拿大": "CA",
             "澳大利亚": "AU", "澳洲": "AU", "新加坡": "SG", "泰国": "TH", "意大利": "IT", "西班牙": "ES",
             "北京": "Beijing", "上海": "Shanghai", "广州": "Guangzhou", "深圳": "Shenzhen", "杭州": "Hangzhou",
             "成都": "Chengdu", "南京": "Nanjing", "武汉": "Wuhan", "西安": "Xian", "重庆": "Chongqing", "天津": "Tianjin",
             "香港": "HK", "台湾": "TW", "澳门": "MO"}
_ENTITY_KEYS = tuple(sorted(_ENTITIES, key=len, reverse=True))
# Words with an opposite: comparison (大于/小于), superlatives (最大/最小), and a few actions.
_OPPOSITES = [("大于", "小于"), ("高于", "低于"), ("多于", "少于"), ("超过", "低于"), ("最大", "最小"), ("最高", "最低"),
              ("最多", "最少"), ("最好", "最差"), ("最快", "最慢"), ("最贵", "最便宜"), ("最早", "最晚"), ("最长", "最短"),
              ("最新", "最旧"), ("升序", "降序"), ("增加", "减少"), ("上涨", "下跌"), ("涨价", "降价"), ("加密", "解密"),
              ("买入", "卖出"), ("最远", "最近"), ("乘以", "除以"), ("加上", "减去"), ("相加", "相减"), ("加大", "减少"),
              ("加大", "减小"), ("扩大", "缩小"), ("放大", "缩小"), ("提高", "降低"), ("前面", "后面"), ("之前", "之后"), ("上传", "下载"), ("充值", "提现"), ("存款", "取款"), ("开启", "关闭"), ("打开", "关闭")]
_OPPOSITE: dict[str, set[str]] = {}
for _x, _y in _OPPOSITES:
    _OPPOSITE.setdefault(_x, set()).add(_y)
    _OPPOSITE.setdefault(_y, set()).add(_x)
_OPPOSITE_WORDS = tuple(sorted(_OPPOSITE, key=len, reverse=True))
# Pronouns by person ("我们" first person too); words that contain one and are not one ("其他", "吉他", "你好").
_PERSONS = {"我们": "1", "咱们": "1", "我": "1", "你们": "2", "您": "2", "你": "2", "他们": "3", "她们": "3", "他": "3", "她": "3"}
_PERSON_WORDS = tuple(sorted(_PERSONS, key=len, reverse=True))
_NOT_PERSONS = ("其他", "其它", "吉他", "他人", "你好", "您好", "迷你", "自我", "我国", "他妈", "你我", "忘我", "利他",
                # framing, not who the question is about: "你知道X吗" asks X as "我想知道X" does
                "你知道", "您知道", "你觉得", "你认为", "你能", "您能", "你可以", "请你", "请您", "我想知道", "我想问",
                "请问", "告诉我", "问一下", "求你", "谢谢你", "谢谢您")
_QUOTED = re.compile(r"“([^”]{1,100})”|「([^」]{1,100})」|『([^』]{1,100})』|《([^》]{1,100})》|\"([^\"]{1,100})\"|`([^`]{1,100})`")
# ASCII names in Chinese text: code identifiers, model numbers ("r9s", "gtx1060") and words ("python", "excel").
_ASCII = re.compile(r"[A-Za-z][A-Za-z0-9_.+#]*(?:\(\))?|[0-9]+[A-Za-z][A-Za-z0-9]*")


def has_han(text: str) -> bool:
    """Whether ``text`` has a Chinese (Han) character."""
    return _HAN.search(text) is not None


@dataclass(frozen=True, slots=True)
class ZhFacts:
    """What the Chinese checks compare, extracted once per text by ``analyze_zh``."""

    text: str
    squashed: str                           # lowercased, spaces dropped
    numbers: tuple[str, ...]                # values, sorted ("三个" -> "3", "1万" -> "10000")
    units: frozenset[tuple[str, str]]       # (value, unit): "5公里" -> ("5", "km")
    negations: tuple[str, ...]              # what each negation governs (the two characters after it)
    times: frozenset[tuple[str, int]]       # (granularity, offset): "明天" -> ("day", 1)
    directions: frozenset[tuple[str, str]]  # "从北京到上海" -> ("北京", "上海")
    opposites: tuple[str, ...]              # words with an opposite ("最大", "大于"), repeats kept
    persons: frozenset[str]                 # "1", "2", "3"
    quoted: frozenset[str]
    names: frozenset[str]                   # ASCII identifiers, model numbers and words, lowercased
    measures: frozenset[str] = frozenset()  # units and dimensions asked about ("多少公里" -> "km", "多长")
    entities: frozenset[str] = frozenset()  # languages, countries and cities named, by one name each


def _value(number: float) -> str:
    text = f"{number:.6f}".rstrip("0").rstrip(".")
    return text or "0"


def chinese_number(run: str) -> float | None:
    """Return the value of a run of Chinese numerals ("三百五十" 350, "两万" 20000, "二〇二三" 2023), or None."""
    if not any(c in _SMALL_UNITS or c in _BIG_UNITS for c in run):
        if all(c in _DIGITS for c in run):  # read digit by digit: "二〇二三"
            return float("".join(str(_DIGITS[c]) for c in run))
        return None
    total, section, digit = 0, 0, None
    for c in run:
        if c in _DIGITS:
            digit = _DIGITS[c]
        elif c in _SMALL_UNITS:
            section += (1 if digit is None else digit) * _SMALL_UNITS[c]
            digit = None
        else:  # 万, 亿
            section += digit or 0
            total = (total + section) * _BIG_UNITS[c] if _BIG_UNITS[c] > 10**4 else total + section * _BIG_UNITS[c]
            section, digit = 0, None
    return float(total + section + (digit or 0))


def _masked(text: str, words: tuple[str, ...]) -> str:
    """``text`` with each of ``words`` blanked out (same length, so positions keep)."""
    for word in words:
        if word in text:
            text = text.replace(word, "\u3000" * len(word))
    return text


def _unit_at(text: str, index: int) -> str | None:
    rest = text[index:index + 4].lower()
    for word in _UNIT_WORDS:
        if rest.startswith(word):
            return _UNITS[word]
    return None


def _numbers(text: str) -> tuple[list[str], set[tuple[str, str]]]:
    numbers, units = [], set()
    text = _PERCENT.sub(lambda m: f"{m.group(1)}%", text)
    scan = _masked(text, _NOT_NUMBERS)
    for m in _NUMBER.finditer(scan):
        if m.group("arabic"):
            digits = m.group("arabic").translate(str.maketrans("０１２３４５６７８９．", "0123456789."))
            value = float(digits)
            for c in m.group("mult"):
                value *= _BIG_UNITS.get(c) or _SMALL_UNITS.get(c, 1)
        else:
            run = m.group("han")
            value = chinese_number(run) if run != "千万" else None  # "千万": by all means (五千万: a number)
            after = _unit_at(scan, m.end())
            # A lone numeral counts only before a unit or measure word, or after 第 ("第一"): "一" alone is often "a".
            if value is None or (len(run) == 1 and after is None and not _MEASURE.match(scan, m.end())
                                 and not (m.start() > 0 and scan[m.start() - 1] == "第")):
                continue
        value_text = _value(value)
        numbers.append(value_text)
        unit = _unit_at(scan, m.end())
        before = scan[m.start() - 1] if m.start() > 0 else ""
        unit = _CURRENCY_BEFORE.get(before, unit)
        if unit:
            units.add((value_text, unit))
    return numbers, units



def _negations(text: str) -> list[str]:
    scan = _A_NOT_A.sub(lambda m: "\u3000" * len(m.group()), _masked(text, _NOT_NEGATIONS))
    out, i = [], 0
    while i < len(scan):
        for word in _NEGATIONS:
            if scan.startswith(word, i):
                governed = scan[i + len(word):i + len(word) + 3].strip("\u3000 ，,。？?！!")
                if word == "不" and i > 0 and governed[:1] in _COMPLEMENTS:  # "去不了": it is 去 that is negated
                    governed = scan[i - 1]
                out.append(governed)
                i += len(word) - 1
                break
        i += 1
    return out


def _find_all(text: str, words: tuple[str, ...]) -> list[str]:
    """Every occurrence of ``words`` in ``text``, longest first, without overlaps."""
    found = []
    for word in words:
        while word in text:
            found.append(word)
            text = text.replace(word, "\u3000" * len(word), 1)
    return found


def _direction_end(end: str) -> str:
    for prefix in _DIRECTION_PREFIX:
        if end.startswith(prefix) and len(end) > len(prefix):
            end = end[len(prefix):]
    return end.lower()


def analyze_zh(text: str) -> ZhFacts | None:
    """Extract what the Chinese checks compare, or None for a text with no Chinese character."""
    if not has_han(text):
        return None
    numbers, units = _numbers(text)
    times = frozenset(t for word in _find_all(text, _TIME_WORDS) for t in _TIMES[word])
    directions = frozenset((a, b) for a, b in ((_direction_end(x), _direction_end(y)) for x, y in _DIRECTION.findall(text))
                           if a and b and a != b)
    persons = frozenset(_PERSONS[w] for w in _find_all(_masked(text, _NOT_PERSONS), _PERSON_WORDS))
    quoted = frozenset(next(g for g in m.groups() if g is not None).strip().lower() for m in _QUOTED.finditer(text))
    names = frozenset(m.group().rstrip("()").lower() for m in _ASCII.finditer(text) if len(m.group()) >= 2)
    measures = {_MEASURE_WORDS[w] for w in _find_all(_masked(text, _DURATION), _MEASURE_KEYS)}
    measures |= {_MEASURE_SINGLE[m.group(2)] for m in _MEASURE_AFTER.finditer(_masked(text, _TIME_WORDS + _MEASURE_KEYS))}
    entities = frozenset(_ENTITIES[w] for w in _find_all(text, _ENTITY_KEYS))
    return ZhFacts(text=text, squashed="".join(text.lower().split()), numbers=tuple(sorted(numbers)),
                   units=frozenset(units), negations=tuple(_negations(text)), times=times, directions=directions,
                   opposites=tuple(sorted(_find_all(text, _OPPOSITE_WORDS))), persons=persons, quoted=quoted, names=names,
                   measures=frozenset(measures), entities=entities)


def multiset_minus(a, b) -> list:
    """Return the items of ``a`` not matched one for one in ``b`` (repeats kept: 1+1 vs 1+2)."""
    rest = list(b)
    out = []
    for x in a:
        if x in rest:
            rest.remove(x)
        else:
            out.append(x)
    return out


def _swap(only_a, only_b) -> str | None:
    """A contradiction when each side has something the other lacks."""
    return f"{sorted(set(only_a))} != {sorted(set(only_b))}" if only_a and only_b else None


def numbers(a: ZhFacts, b: ZhFacts) -> str | None:
    """Each text has a number the other lacks ("三个苹果" vs "五个苹果"); "3个" and "三个" agree."""
    return _swap(multiset_minus(a.numbers, b.numbers), multiset_minus(b.numbers, a.numbers))


def units(a: ZhFacts, b: ZhFacts) -> str | None:
    """One number with two units ("5公里" vs "5英里", "100元" vs "100美元")."""
    ua, ub = dict(a.units), dict(b.units)
    clashes = sorted(f"{v}{ua[v]} != {v}{ub[v]}" for v in ua.keys() & ub.keys() if ua[v] != ub[v])
    return "; ".join(clashes) or None


def _content_chars(text: str) -> set[str]:
    return {c for c in text if _HAN.match(c) or c.isalnum()} - _NEGATION_CHARS - _PARTICLES


def negation(a: ZhFacts, b: ZhFacts) -> str | None:
    """One text negates what the other asserts ("可以吃鸡蛋吗" vs "不可以吃鸡蛋吗", "孕妇能吃螃蟹吗" vs "孕妇为什么不能
    吃螃蟹"): the negated word (past a modal: 不能吃 negates 吃) is in the other text, and half the characters of the
    shorter text are in the longer one (else the texts differ in more than the negation)."""
    if bool(a.negations) == bool(b.negations):
        return None
    negated, other = (a, b) if a.negations else (b, a)
    flipped = [w for w in negated.negations if any(c in other.squashed for c in w.lstrip(_MODALS)[:1] or w[:1])]
    ca, cb = _content_chars(a.text), _content_chars(b.text)
    if not flipped or len(ca & cb) / max(min(len(ca), len(cb)), 1) < NEGATION_OVERLAP:
        return None
    return f"negated {flipped} in " + ("query" if negated is a else "candidate") + " only"


def time(a: ZhFacts, b: ZhFacts) -> str | None:
    """Both texts name a time of one granularity and no such time agrees ("今天" vs "明天", "今年" vs "去年")."""
    for grain in ("day", "weekday", "week", "month", "year"):
        ta, tb = {o for g, o in a.times if g == grain}, {o for g, o in b.times if g == grain}
        if ta and tb and not ta & tb:
            return f"{grain} {sorted(ta)} != {sorted(tb)}"
    return None


def _same_end(x: str, y: str) -> bool:
    """One end written with more words ("北京坐高铁" and "北京"): either starts with the other."""
    return x == y or (min(len(x), len(y)) >= 2 and (x.startswith(y) or y.startswith(x)))


def order(a: ZhFacts, b: ZhFacts) -> str | None:
    """The two ends of a direction swapped ("从北京到上海" vs "从上海到北京", "中文翻译成英文" vs the reverse,
    "从北京坐高铁到上海" vs "从上海到北京")."""
    for x, y in a.directions:
        for u, v in b.directions:
            reversed_ = _same_end(x, v) and _same_end(y, u) and not (_same_end(x, u) and _same_end(y, v))
            if reversed_ and not any(_same_end(x, p) and _same_end(y, q) for p, q in b.directions):
                return f"{x}->{y} vs {u}->{v}"
    return None


def opposites(a: ZhFacts, b: ZhFacts) -> str | None:
    """One text says a word and the other its opposite ("大于" vs "小于", "最大" vs "最小", "升序" vs "降序")."""
    more_b = set(multiset_minus(b.opposites, a.opposites))
    for word in multiset_minus(a.opposites, b.opposites):
        clash = _OPPOSITE[word] & more_b
        if clash:
            return f"{word} vs {sorted(clash)[0]}"
    return None


def person(a: ZhFacts, b: ZhFacts) -> str | None:
    """Both texts name who, and no person agrees ("我该怎么办" vs "他该怎么办")."""
    if a.persons and b.persons and not a.persons & b.persons:
        return f"person {sorted(a.persons)} != {sorted(b.persons)}"
    return None


def quoted(a: ZhFacts, b: ZhFacts) -> str | None:
    """Each text quotes a string (“”, 「」, 《》) the other lacks ("《红楼梦》" vs "《西游记》").

    Two quotes sharing half their characters are one title written two ways ("《冬季到台北来看雨》" /
    "《冬季到台北看雨》"): 0.14% of LCQMC dev paraphrases differ so, with a typo or a word left out."""
    only_a = [q for q in a.quoted if "".join(q.split()) not in b.squashed]
    only_b = [q for q in b.quoted if "".join(q.split()) not in a.squashed]
    if any(len(set(x) & set(y)) / max(len(set(x) | set(y)), 1) >= 0.5 for x in only_a for y in only_b):
        return None
    return _swap(only_a, only_b)


def identifiers(a: ZhFacts, b: ZhFacts) -> str | None:
    """Each text names an ASCII name the other lacks ("python怎么排序" vs "java怎么排序", "r9s" vs "r11")."""
    return _swap([n for n in a.names if n not in b.squashed], [n for n in b.names if n not in a.squashed])


def measures(a: ZhFacts, b: ZhFacts) -> str | None:
    """Each text asks in a unit or dimension the other does not ("多少公里" vs "多少英里", "多长" vs "多宽")."""
    return _swap(a.measures - b.measures, b.measures - a.measures)


def entities(a: ZhFacts, b: ZhFacts) -> str | None:
    """Each text names a language, country or city the other does not ("翻译成日文" vs "翻译成中文")."""
    return _swap(a.entities - b.entities, b.entities - a.entities)


# By the name of the check in ``checks.CHECKS`` each one stands in for when both texts are Chinese.
ZH_CHECKS: dict[str, Callable[[ZhFacts, ZhFacts], str | None]] = {
    "numbers": numbers,
    "units": units,
    "negation": negation,
    "time": time,
    "order": order,
    "opposites": opposites,
    "person": person,
    "quoted": quoted,
    "identifiers": identifiers,
    "measures": measures,
    "entities": entities,
}
