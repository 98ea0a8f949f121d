"""A generated workload: questions with repeats, paraphrases and near-miss negatives.

Written for the project (no external data), used by ``make demo``, the tests and the
benchmarks. Each intent has phrasings that must share an answer; intents in the same family
are near misses of each other (another number, city, language or negation) that must not. Some
intents are Chinese (paraphrases and near misses: another day, count, unit, direction, a negation).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["INTENTS", "Request", "generate"]

# (intent id, phrasings). Consecutive ids with the same prefix are near misses of each other.
INTENTS: dict[str, tuple[str, ...]] = {
    "capital-france": ("What is the capital of France?", "Which city is the capital of France?", "Tell me the capital city of France.", "what's France's capital?"),
    "capital-germany": ("What is the capital of Germany?", "Which city is the capital of Germany?", "Tell me the capital city of Germany."),
    "capital-spain": ("What is the capital of Spain?", "Which city is Spain's capital?"),
    "py-reverse-list": ("How do I reverse a list in Python?", "What's the way to reverse a Python list?", "How can I reverse the order of a list in Python?"),
    "py-sort-list": ("How do I sort a list in Python?", "What's the way to sort a Python list?", "How can I sort the items of a list in Python?"),
    "js-reverse-array": ("How do I reverse an array in JavaScript?", "What's the way to reverse a JavaScript array?"),
    "miles-5": ("Convert 5 miles to kilometers.", "How many kilometers is 5 miles?", "5 miles in km?"),
    "miles-50": ("Convert 50 miles to kilometers.", "How many kilometers is 50 miles?"),
    "km-5": ("Convert 5 kilometers to miles.", "How many miles is 5 kilometers?"),
    "boil-water-c": ("At what temperature does water boil in Celsius?", "What is the boiling point of water in Celsius?", "Water boils at how many degrees Celsius?"),
    "boil-water-f": ("At what temperature does water boil in Fahrenheit?", "What is the boiling point of water in Fahrenheit?"),
    "py311-new": ("What's new in Python 3.11?", "What are the new features of Python 3.11?", "Which features were added in Python 3.11?"),
    "py312-new": ("What's new in Python 3.12?", "What are the new features of Python 3.12?"),
    "ww2-end": ("When did World War II end?", "In what year did the Second World War end?", "What year did WW2 finish?"),
    "ww1-end": ("When did World War I end?", "In what year did the First World War end?"),
    "ww2-start": ("When did World War II start?", "In what year did the Second World War begin?"),
    "http-404": ("What does HTTP status 404 mean?", "What is an HTTP 404 error?", "Explain the HTTP 404 status code."),
    "http-500": ("What does HTTP status 500 mean?", "What is an HTTP 500 error?"),
    "http-429": ("What does HTTP status 429 mean?", "What is an HTTP 429 error?", "Explain the 429 Too Many Requests status code."),
    "git-undo-commit": ("How do I undo the last git commit?", "How can I revert my most recent commit in git?", "What's the command to undo the last commit in git?"),
    "git-undo-push": ("How do I undo a git push?", "How can I revert a commit I already pushed in git?"),
    "sleep-adults": ("How many hours of sleep do adults need?", "How much sleep does an adult need each night?", "What is the recommended amount of sleep for adults?"),
    "sleep-teens": ("How many hours of sleep do teenagers need?", "How much sleep does a teenager need each night?"),
    "sql-join-inner": ("What is an inner join in SQL?", "Explain INNER JOIN in SQL.", "How does an inner join work in SQL?"),
    "sql-join-left": ("What is a left join in SQL?", "Explain LEFT JOIN in SQL."),
    "coffee-pregnant": ("Is it safe to drink coffee while pregnant?", "Can pregnant women drink coffee?", "Is coffee okay during pregnancy?"),
    "coffee-not-pregnant": ("Why is it unsafe to drink coffee while pregnant?", "What are the risks of drinking coffee during pregnancy?"),
    "translate-hello-fr": ("How do you say hello in French?", "What is 'hello' in French?", "Translate hello into French."),
    "translate-hello-es": ("How do you say hello in Spanish?", "What is 'hello' in Spanish?"),
    "translate-bye-fr": ("How do you say goodbye in French?", "What is 'goodbye' in French?"),
    "np-mean": ("How do I compute the mean of a numpy array?", "How can I get the average of a numpy array?", "What's the numpy function for the mean of an array?"),
    "np-median": ("How do I compute the median of a numpy array?", "How can I get the median of a numpy array?"),
    "tz-utc-est": ("What is the time difference between UTC and EST?", "How many hours is EST behind UTC?"),
    "tz-utc-pst": ("What is the time difference between UTC and PST?", "How many hours is PST behind UTC?"),
    "photosynthesis": ("How does photosynthesis work?", "Explain photosynthesis.", "Can you explain how photosynthesis works?", "What is the process of photosynthesis?"),
    "respiration": ("How does cellular respiration work?", "Explain cellular respiration."),
    "mortgage-15": ("What are the pros and cons of a 15-year mortgage?", "Should I choose a 15-year mortgage? What are the pros and cons?"),
    "mortgage-30": ("What are the pros and cons of a 30-year mortgage?", "Should I choose a 30-year mortgage? What are the pros and cons?"),
    "docker-list": ("How do I list running Docker containers?", "What command shows the running Docker containers?", "How can I see which docker containers are running?"),
    "docker-stop": ("How do I stop all running Docker containers?", "What command stops every running Docker container?"),
    # Chinese: answered by the multilingual model when its extra is installed (docs/languages.md), else exact-only.
    "zh-weather-today": ("今天北京天气怎么样？", "今天北京的天气怎么样", "北京今天天气怎么样？", "今天北京天气如何？"),
    "zh-weather-tomorrow": ("明天北京天气怎么样？", "明天北京的天气怎么样"),
    "zh-py-sort": ("python 怎么给列表排序？", "Python 列表怎么排序？", "python 列表如何排序"),
    "zh-py-sort-desc": ("python 列表怎么降序排序？", "python 列表如何降序排序"),
    "zh-apples-3": ("我想买三个苹果，一共多少钱？", "买三个苹果一共多少钱？"),
    "zh-apples-5": ("我想买五个苹果，一共多少钱？", "买五个苹果一共多少钱？"),
    "zh-crab-pregnant": ("孕妇可以吃螃蟹吗？", "孕妇能吃螃蟹吗", "孕妇可不可以吃螃蟹？"),
    "zh-crab-why-not": ("孕妇为什么不能吃螃蟹？", "为什么孕妇不能吃螃蟹"),
    "zh-km-to-miles": ("5公里是多少英里？", "5公里等于多少英里", "五公里是多少英里"),
    "zh-miles-to-km": ("5英里是多少公里？", "5英里等于多少公里"),
    "zh-train-bj-sh": ("从北京到上海坐高铁要多久？", "北京到上海坐高铁要多长时间", "从北京坐高铁到上海要多久？"),
    "zh-train-sh-bj": ("从上海到北京坐高铁要多久？", "上海到北京坐高铁要多长时间"),
}


@dataclass(frozen=True)
class Request:
    """One request of the workload: the chat request and the intent it asks."""

    intent: str
    text: str
    body: dict


def generate(n: int = 300, *, seed: int = 0, model: str = "gpt-4o-mini", zipf: float = 1.1) -> list[Request]:
    """Return ``n`` chat requests drawn from the intents with Zipf-like popularity (seeded)."""
    rng = random.Random(seed)
    names = list(INTENTS)
    rng.shuffle(names)
    weights = [1 / (rank + 1) ** zipf for rank in range(len(names))]
    out = []
    for intent in rng.choices(names, weights=weights, k=n):
        text = rng.choice(INTENTS[intent])
        body = {"model": model, "temperature": 0, "messages": [
            {"role": "system", "content": "You are a concise, helpful assistant."},
            {"role": "user", "content": text},
        ]}
        out.append(Request(intent, text, body))
    return out
