"""Check one prompt-benchmark file: python benchmarks/data/prompts/validate.py FILE.jsonl"""
import json
import sys

KINDS = {"entity", "number", "unit", "version", "year", "negation", "direction", "comparison",
         "scope", "person", "time", "other"}


def main(path: str) -> int:
    errors, families, groups, texts, near = [], set(), set(), {}, 0
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            fam = json.loads(line)
        except json.JSONDecodeError as exc:
            errors.append(f"line {n}: not JSON: {exc}")
            continue
        where = f"line {n} ({fam.get('family')})"
        for key in ("family", "domain", "lang", "groups", "near_misses"):
            if key not in fam:
                errors.append(f"{where}: missing {key!r}")
        if fam.get("family") in families:
            errors.append(f"{where}: duplicate family id")
        families.add(fam.get("family"))
        own = set()
        for g in fam.get("groups", []):
            if g.get("id") in groups:
                errors.append(f"{where}: duplicate group id {g.get('id')!r}")
            groups.add(g.get("id"))
            ts = g.get("texts", [])
            if not 3 <= len(ts) <= 6:
                errors.append(f"{where}: group {g.get('id')!r} has {len(ts)} texts, needs 3-6")
            for t in ts:
                if not isinstance(t, str) or not t.strip():
                    errors.append(f"{where}: empty text in {g.get('id')!r}")
                elif t in texts:
                    errors.append(f"{where}: text {t!r} also in group {texts[t]!r}")
                else:
                    texts[t] = g.get("id")
                    own.add(t)
        for m in fam.get("near_misses", []):
            near += 1
            if m.get("kind") not in KINDS:
                errors.append(f"{where}: near miss kind {m.get('kind')!r} not in {sorted(KINDS)}")
            if m.get("a") not in own:
                errors.append(f"{where}: near miss 'a' {m.get('a')!r} is not a text of this family's groups")
            if not isinstance(m.get("b"), str) or not m["b"].strip() or m.get("b") == m.get("a"):
                errors.append(f"{where}: near miss 'b' {m.get('b')!r} is empty or equal to 'a'")
            elif texts.get(m["b"]) == texts.get(m.get("a")) and m["b"] in own:
                errors.append(f"{where}: near miss 'b' {m['b']!r} is a paraphrase in the same group as 'a'")
    for e in errors[:50]:
        print(e)
    print(f"{path}: {len(families)} families, {len(groups)} groups, {len(texts)} texts, {near} near misses, {len(errors)} errors")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
