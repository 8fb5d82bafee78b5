"""Generate the bundled sample, ``klue_sample.json`` (deterministic; seeded).

    python -m relex.data.sample.generate            # rewrite klue_sample.json
    python -m relex.data.sample.generate --check    # exit 1 if the file differs from the output

The sample is written for this project: sentences from hand-written templates, filled with
invented people (random surname + given-name syllables), organisations (random stems + a kind),
places, countries, dates, titles and head counts. Every relation has several templates with
its own cue words ("태어났다", "본사를 둔", "졸업했다", ...), with the subject before or after the
object; ``no_relation`` rows put two entities in a sentence without such a cue (meeting,
travelling, attending an event), and some pair two entities of a sentence whose relation cue
links one of them to a third, unmarked entity. Optional neutral openings and closings vary the
length. Rows follow the KLUE-RE JSON format: ``end_idx`` is inclusive.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

from relex.config import NEGATIVE_LABEL

SEED = 20240611
SOURCE = "relex-sample"
OUT = Path(__file__).resolve().parent / "klue_sample.json"

# ------------------------------------------------------------------------ entity generators
SURNAMES = "김이박최정강조윤장임한오서신권황안송류홍전고문양손배백허남심노하곽성차주우구민유나진지엄채원천방공현함변염여추도소석선설마길연위표명기반왕금옥육인맹제모탁국어경봉사부황"
GIVEN = (
    "민서지현준우하은도윤서연시우수아예준지호유진건우채원현우다은승민소윤재원가은태윤"
    "보람한결나래새롬다온이안로아주원선호경민동하세진정훈미란혜진영호상철은비슬기"
)
ORG_STEMS_A = "가나다라마바사아자차카타파하한누온미새솔별해달빛청금은초록푸른"
ORG_STEMS_B = "온람빛솔결누림들샘울율진담윤채하로린아엘시"
COMPANY_KINDS = ["전자", "건설", "제약", "식품", "항공", "증권", "화학", "물산", "테크", "소프트", "모터스", "에너지", "바이오", "통신", "해운", "출판"]
LONG_KINDS = ["정보통신", "바이오로직스", "에너지솔루션", "엔터테인먼트", "문화재단", "미래연구원", "생명과학", "디스플레이"]
INSTITUTE_KINDS = ["연구소", "재단", "은행", "병원", "신문", "방송", "극단", "합창단", "구단"]
ASSOC_KINDS = ["협회", "연합회", "연맹", "협의회", "조합", "컨소시엄"]
ASSOC_FIELDS = ["반도체", "항공", "출판", "제약", "게임", "해운", "식품", "프로축구", "방송", "건설", "소프트웨어", "바이오"]
SCHOOL_KINDS = ["대학교", "대학교", "과학기술원", "고등학교", "예술대학", "외국어대학교"]
PLACE_A = "가나다라마바사아자차카타파하서동남북청백금은"
PLACE_B = "양주천산포원진해령성평안창"
PLACE_KINDS = ["시", "군", "읍", "시", "도"]
COUNTRY_PARTS = ["라", "베", "노", "르", "타", "니", "아", "카", "로", "스", "에", "몬", "델", "바", "토", "리", "산", "마"]
COUNTRY_KINDS = ["", "", " 공화국", " 왕국", " 연방"]
TITLES = [
    "대표이사", "사무총장", "교수", "감독", "편집장", "수석 연구원", "회장", "부사장", "이사장", "주필",
    "총감독", "상임지휘자", "부장판사", "수석 디자이너", "의원", "위원장", "원장", "전무", "단장", "코치",
]
HEADCOUNT_UNITS = ["명", "여 명", "명가량", "명 이상"]


def person(rng: random.Random) -> str:
    return rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN)


def stem(rng: random.Random) -> str:
    return rng.choice(ORG_STEMS_A) + rng.choice(ORG_STEMS_B)


def company(rng: random.Random) -> str:
    return stem(rng) + rng.choice(COMPANY_KINDS)


def institution(rng: random.Random) -> str:
    return stem(rng) + rng.choice(INSTITUTE_KINDS)


def employer(rng: random.Random) -> str:
    return company(rng) if rng.random() < 0.7 else institution(rng)


def association(rng: random.Random) -> str:
    return rng.choice(["한국", "대한", "국제", "세계", ""]) + rng.choice(ASSOC_FIELDS) + rng.choice(ASSOC_KINDS)


def school(rng: random.Random) -> str:
    return stem(rng) + rng.choice(SCHOOL_KINDS)


def place(rng: random.Random) -> str:
    return rng.choice(PLACE_A) + rng.choice(PLACE_B) + rng.choice(PLACE_KINDS)


def country(rng: random.Random) -> str:
    n = rng.choice([2, 3, 3, 4])
    return "".join(rng.choice(COUNTRY_PARTS) for _ in range(n)) + rng.choice(COUNTRY_KINDS)


def date(rng: random.Random) -> str:
    y = rng.randint(1921, 2015)
    form = rng.random()
    if form < 0.45:
        return f"{y}년 {rng.randint(1, 12)}월 {rng.randint(1, 28)}일"
    if form < 0.7:
        return f"{y}년 {rng.randint(1, 12)}월"
    return f"{y}년"


def headcount(rng: random.Random) -> str:
    n = rng.choice([rng.randint(12, 99) * 10, rng.randint(2, 60) * 100, rng.randint(1, 9) * 1000 + rng.randint(0, 9) * 100])
    if n >= 1000 and rng.random() < 0.4:
        text = f"{n // 1000}천" + (f"{n % 1000 // 100}백" if n % 1000 else "")
    else:
        text = f"{n:,}"
    unit = rng.choice(HEADCOUNT_UNITS)
    return ("약 " if unit == "명" and rng.random() < 0.4 else "") + text + unit


def alternate_pair(rng: random.Random) -> tuple[str, str]:
    s = stem(rng)
    full = s + rng.choice(LONG_KINDS)
    if rng.random() < 0.5:
        short = s
    else:
        short = s + rng.choice(["그룹", "재단", "연"])
    return full, short


GEN = {
    "PER": person,
    "ORG": employer,
    "COMPANY": company,
    "ASSOC": association,
    "SCHOOL": school,
    "LOC": place,
    "COUNTRY": country,
    "DAT": date,
    "POH": lambda rng: rng.choice(TITLES),
    "NOH": headcount,
}
KLUE_TYPE = {"COMPANY": "ORG", "ASSOC": "ORG", "SCHOOL": "ORG", "COUNTRY": "LOC"}

# ------------------------------------------------------------------------------ templates
# {S}/{O} are the subject/object, {X} an unmarked extra entity, {N} a small number; "{S|은}"
# appends the particle form that fits the entity's last sound (은/는, 이/가, 을/를, 과/와);
# "{로}" and "{이다|인}" right after a slot do the same for 으로/로 and the copula.
# Each entry: (label, subject kind, object kind, rows, templates); a kind is a key of GEN
# (entity kinds map to KLUE types through KLUE_TYPE), or ALT_FULL/ALT_SHORT: a full organisation
# name and its short form. An extra entity's kind follows "@", e.g. "...{X}...@X=DAT".
RELATIONS: list[tuple[str, str, str, int, list[str]]] = [
    ("per:employee_of", "PER", "ORG", 60, [
        "{S|은} {O}에서 {N}년째 근무하고 있다.",
        "{O}에 입사한 {S|은} 현재 마케팅팀을 이끌고 있다.",
        "{O} 소속 연구원 {S|은} 이번 성과를 학회에서 발표했다.",
        "{S|은} {O}의 직원으로 일하며 신제품 개발을 맡았다.",
        "{O}에 다니는 {S|은} 주말마다 봉사 활동을 한다.",
        "{S} 씨는 {O}에서 일한 지 {N}년이 넘었다.",
        "{O}에서 근무하는 {S|은} 회사를 대표해 회의에 참석했다.",
        "{S|이} 몸담고 있는 {O|은} 올해 해외 진출을 추진한다.",
        "{O} 직원 {S|은} 고객 응대 부문에서 상을 받았다.",
        "{S|은} {O}에 입사해 영업 부서에 배치됐다.",
    ]),
    ("org:top_members/employees", "COMPANY", "PER", 55, [
        "{S}의 대표이사 {O|은} 기자회견을 열어 새 전략을 밝혔다.",
        "{O} 회장이 이끄는 {S|은} 지난해 매출이 크게 늘었다.",
        "{S|은} {O|을} 새 최고경영자로 선임했다.",
        "{O|은} {S}의 사장으로 취임했다.",
        "{S}의 수장인 {O|은} 직원들에게 감사 인사를 전했다.",
        "{S} 경영진을 이끄는 {O} 대표는 투자 계획을 설명했다.",
        "{O|은} {N}년째 {S}의 최고경영자를 맡고 있다.",
        "{S|은} 이사회에서 {O|을} 신임 대표로 선출했다.",
    ]),
    ("per:title", "PER", "POH", 50, [
        "{O} {S|은} 이날 행사에서 축사를 했다.",
        "{S} {O|은} 새 계획을 발표했다.",
        "{S|은} {O}{로} 임명되었다.",
        "{O}{이다|인} {S|은} 인터뷰에서 소감을 밝혔다.",
        "{S|은} 올해 {O}{로} 승진했다.",
        "{O} 직을 맡은 {S|은} 첫 회의를 주재했다.",
        "당시 {O}{이다|이던} {S|은} 그 결정을 지지했다.",
        "{S} {O}의 발언이 화제가 되었다.",
    ]),
    ("org:place_of_headquarters", "COMPANY", "LOC", 45, [
        "{O}에 본사를 둔 {S|은} 신규 공장을 착공했다.",
        "{S}의 본사는 {O}에 있다.",
        "{S|은} 본사를 {O}{로} 옮겼다.",
        "{O}에 위치한 {S} 본사에서 주주총회가 열렸다.",
        "{S|은} {O}에 본부를 두고 전국에 지점을 운영한다.",
        "{O}에 본사가 있는 {S|은} 올해 채용을 늘린다.",
        "{S|은} {O} 본사 건물을 새로 지었다.",
    ]),
    ("per:date_of_birth", "PER", "DAT", 40, [
        "작가 {S}({O} ~ )의 첫 소설이 다시 출간되었다.",
        "{O}에 태어난 {S|은} 어려서부터 그림을 그렸다.",
        "{S|은} {O}에 {X}에서 태어났다.@X=LOC",
        "{S|은} {O}생으로 올해 데뷔했다.",
        "{S|이} 태어난 것은 {O}의 일이다.",
        "{S|은} {O} 출생의 음악가이다.",
        "{O}에 출생한 {S|은} 대학에서 물리학을 전공했다.",
    ]),
    ("per:place_of_birth", "PER", "LOC", 35, [
        "{O}에서 태어난 {S|은} 어린 시절을 바닷가에서 보냈다.",
        "{S|은} {X}에 {O}에서 태어났다.@X=DAT",
        "{S|은} {O}에서 나고 자랐다.",
        "{O} 태생인 {S|은} 열 살 때 이사를 했다.",
        "{S|이} 태어난 곳은 {O}의 작은 마을이다.",
        "{S}의 출생지는 {O}{이다|이다}.",
    ]),
    ("org:member_of", "COMPANY", "ASSOC", 35, [
        "{S|은} {O}에 가입했다.",
        "{O} 회원사인 {S|은} 공동 성명에 서명했다.",
        "{S|은} {O}의 정회원으로 활동하고 있다.",
        "{O}에 속한 {S|은} 업계 기준 마련에 참여했다.",
        "{S|은} 지난해 {O}에 회원사로 합류했다.",
        "{O|은} 신규 회원사로 {S|을} 받아들였다.",
    ]),
    ("per:schools_attended", "PER", "SCHOOL", 35, [
        "{S|은} {O|을} 졸업했다.",
        "{O}에서 공부한 {S|은} 연구자의 길을 걸었다.",
        "{O}에 재학 중인 {S|은} 대회에서 금상을 받았다.",
        "{O|을} 나온 {S|은} 곧바로 취업했다.",
        "{S|은} {O}에서 석사 학위를 받았다.",
        "{O} 졸업생인 {S|은} 모교에 장학금을 기부했다.",
    ]),
    ("per:origin", "PER", "COUNTRY", 30, [
        "{O} 출신의 {S|은} 이번 대회에서 우승했다.",
        "{O} 국적의 {S|은} 이 팀에 새로 합류했다.",
        "{S|은} {O} 출신 배우로 널리 알려져 있다.",
        "{O}에서 온 {S|은} 이 도시에서 식당을 운영한다.",
        "{S|은} {O} 국적을 가진 화가이다.",
    ]),
    ("per:spouse", "PER", "PER", 30, [
        "{S|은} 배우자 {O|과} 함께 행사장을 찾았다.",
        "{S}의 아내 {O|은} 소설가로 활동한다.",
        "{S|은} {N}년 전 {O|과} 결혼했다.",
        "{O}의 남편인 {S|은} 공연을 관람했다.",
        "{S}·{O} 부부는 새 책을 함께 펴냈다.",
        "{S|은} 부인 {O}에게 감사의 뜻을 전했다.",
    ]),
    ("org:founded", "COMPANY", "DAT", 30, [
        "{S|은} {O}에 설립되었다.",
        "{O}에 문을 연 {S|은} 꾸준히 성장했다.",
        "{S|은} {O} 창립 이후 처음으로 적자를 냈다.",
        "{O}에 창업한 {S|은} 올해 상장을 앞두고 있다.",
        "{S}(설립 {O})의 매출이 지난해 두 배로 늘었다.",
        "{S|은} {O}에 세워진 회사이다.",
    ]),
    ("org:alternate_names", "ALT_FULL", "ALT_SHORT", 30, [
        "{S}(이하 {O})에서 새 서비스를 출시했다.",
        "{S}, 약칭 {O|은} 올해 설립 기념식을 열었다.",
        "흔히 {O}{로} 불리는 {S|은} 업계 선두 기업이다.",
        "{S}(약칭 {O})에서 신입 사원을 모집한다.",
        "{S|은} 줄여서 {O}{로} 부른다.",
    ]),
    ("org:number_of_employees/members", "ORG", "NOH", 25, [
        "{S|은} 직원 {O|을} 두고 있다.",
        "{S}의 회원 수는 {O}에 달한다.",
        "{O}의 임직원이 근무하는 {S|은} 복지 제도를 개편했다.",
        "{S}에는 {O}의 회원이 가입해 있다.",
        "{S|은} 임직원 {O} 규모의 조직이다.",
    ]),
]

# (subject kind, object kind, template); no relation cue between S and O.
NO_RELATION: list[tuple[str, str, str]] = [
    ("PER", "PER", "{S|과} {O|은} 같은 무대에 올라 노래를 불렀다."),
    ("PER", "PER", "{S|은} 회의에서 {O}의 의견에 반대했다."),
    ("PER", "PER", "{O|과} {S|은} 이번 대회 결승에서 맞붙었다."),
    ("PER", "ORG", "{S|은} {O}에 대한 기사를 읽고 감상을 남겼다."),
    ("PER", "ORG", "{O|은} 행사에 {S|을} 초청했지만 그는 오지 않았다."),
    ("PER", "ORG", "{S|은} {O}의 신제품을 구입해 사용해 보았다."),
    ("PER", "LOC", "{S|은} 지난달 {O|을} 여행했다."),
    ("PER", "LOC", "{O}에서 열린 강연에 {S|이} 연사로 나섰다."),
    ("PER", "DAT", "{S|은} {O}에 열린 시상식에서 상을 받았다."),
    ("PER", "DAT", "{O}에 {S|은} 첫 개인전을 열었다."),
    ("PER", "NOH", "{S|은} 공연에 {O}의 관객이 찾았다고 말했다."),
    ("COMPANY", "LOC", "{S|은} {O}에서 열린 박람회에 참가했다."),
    ("COMPANY", "LOC", "{O}에서 {S}의 신제품 설명회가 열렸다."),
    ("COMPANY", "COMPANY", "{S|과} {O|은} 같은 날 신제품을 공개했다."),
    ("COMPANY", "COMPANY", "{S|은} {O|과} 특허 소송을 벌이고 있다."),
    ("COMPANY", "DAT", "{S|은} {O}에 새 광고를 내보냈다."),
    ("COMPANY", "DAT", "{O}에 {S}의 주가가 크게 올랐다."),
    ("COMPANY", "NOH", "{S}의 행사에는 {O}의 관람객이 몰렸다."),
    ("COMPANY", "PER", "{S|은} 소설가 {O}의 신작 광고를 맡았다."),
    ("COMPANY", "PER", "{O|은} {S}의 제품을 오랫동안 써 왔다고 밝혔다."),
    # a relation cue that links one marked entity to a third, unmarked one
    ("PER", "PER", "{S|은} {X}에서 근무하며 {O|과} 자주 점심을 먹는다.@X=COMPANY"),
    ("PER", "LOC", "{X}에서 태어난 {S|은} 최근 {O|을} 방문했다.@X=LOC"),
    ("COMPANY", "LOC", "{X}에 본사를 둔 {S|은} {O}에 물류 창고를 빌렸다.@X=LOC"),
    ("PER", "COMPANY", "{S|은} {X|을} 졸업한 뒤 {O}의 광고에 출연했다.@X=SCHOOL"),
]
NO_RELATION_COUNT = 200

# Neutral enough for any statement (no tense or time of their own).
OPENINGS = ["", "", "", "업계에 따르면 ", "보도에 따르면 ", "관계자에 따르면 ", "알려진 바에 따르면 "]
CLOSINGS = ["", "", "", " 이 소식은 여러 매체를 통해 전해졌다.", " 이 내용은 공식 자료로 확인되었다.", " 관련 기사는 오늘 자 신문에 실렸다."]

# ------------------------------------------------------------------------- Korean particles
PARTICLES = {"은": ("은", "는"), "이": ("이", "가"), "을": ("을", "를"), "과": ("과", "와"), "로": ("으로", "로")}
_DIGIT_FINAL = {"0": "ㅇ", "1": "ㄹ", "2": "", "3": "ㅁ", "4": "", "5": "", "6": "ㄱ", "7": "ㄹ", "8": "ㄹ", "9": ""}
_JONG = ["", "ㄱ", "ㄲ", "ㄳ", "ㄴ", "ㄵ", "ㄶ", "ㄷ", "ㄹ", "ㄺ", "ㄻ", "ㄼ", "ㄽ", "ㄾ", "ㄿ", "ㅀ", "ㅁ", "ㅂ", "ㅄ", "ㅅ", "ㅆ", "ㅇ", "ㅈ", "ㅊ", "ㅋ", "ㅌ", "ㅍ", "ㅎ"]


def final_consonant(word: str) -> str:
    """The final consonant (jongseong) of the word's last sound; "" when it ends in a vowel."""
    ch = word.rstrip()[-1]
    if "가" <= ch <= "힣":
        return _JONG[(ord(ch) - 0xAC00) % 28]
    if ch in _DIGIT_FINAL:
        return _DIGIT_FINAL[ch]
    return ""


def particle(word: str, kind: str) -> str:
    fc = final_consonant(word)
    if kind == "로":
        return "으로" if fc and fc != "ㄹ" else "로"
    if kind.startswith("이다|"):
        # the copula: "{O}{이다|인}" -> 교수인 / 코치인; only the plain "이다" drops 이 after a vowel
        form = kind.split("|", 1)[1]
        return "다" if form == "이다" and not fc else form
    with_fc, without = PARTICLES[kind]
    return with_fc if fc else without


# ------------------------------------------------------------------------------ rendering
_SLOT = re.compile(r"\{([SOXYN])(?:\|([^}]+))?\}|\{(로|이다\|[^}]+)\}")


def render(template: str, ents: dict[str, str], n: int) -> tuple[str, dict[str, tuple[int, int]]]:
    """Fill a template; returns the sentence and each slot's inclusive (start, end)."""
    out: list[str] = []
    spans: dict[str, tuple[int, int]] = {}
    pos = 0
    last_word = ""
    for m in _SLOT.finditer(template):
        out.append(template[pos : m.start()])
        if m.group(1):
            slot, part = m.group(1), m.group(2)
            word = str(n) if slot == "N" else ents[slot]
            start = sum(len(x) for x in out)
            out.append(word)
            if slot != "N":
                spans[slot] = (start, start + len(word) - 1)
            if part:
                out.append(particle(word, part))
            last_word = word
        else:  # a particle that follows a slot directly: {S}{로}, {O}{이다|인}
            out.append(particle(last_word, m.group(3)))
        pos = m.end()
    out.append(template[pos:])
    return "".join(out), spans


def _kind_type(kind: str) -> str:
    return KLUE_TYPE.get(kind, kind)


def make_row(rng: random.Random, label: str, s_kind: str, o_kind: str, template: str) -> dict:
    template, _, extras = template.partition("@")
    ents: dict[str, str] = {}
    kinds: dict[str, str] = {}
    if s_kind == "ALT_FULL":
        ents["S"], ents["O"] = alternate_pair(rng)
        kinds["S"] = kinds["O"] = "ORG"
    else:
        for slot, kind in (("S", s_kind), ("O", o_kind)):
            word = GEN[kind](rng)
            while word in ents.values():
                word = GEN[kind](rng)
            ents[slot] = word
            kinds[slot] = _kind_type(kind)
    for spec in filter(None, extras.split(",")):
        slot, kind = spec.split("=")
        word = GEN[kind](rng)
        while word in ents.values():
            word = GEN[kind](rng)
        ents[slot] = word
    body, spans = render(template, ents, rng.randint(2, 15))
    # neutral openings only before templates that begin with an entity
    opening = rng.choice(OPENINGS) if template.startswith("{") else ""
    sentence = opening + body + rng.choice(CLOSINGS)
    shift = len(opening)
    row = {"sentence": sentence}
    for slot, key in (("S", "subject_entity"), ("O", "object_entity")):
        start, end = spans[slot]
        row[key] = {"word": ents[slot], "start_idx": start + shift, "end_idx": end + shift, "type": kinds[slot]}
    row["label"] = label
    row["source"] = SOURCE
    return row


def generate(seed: int = SEED) -> list[dict]:
    rng = random.Random(seed)
    plan: list[tuple[str, str, str, str]] = []
    for label, s_kind, o_kind, count, templates in RELATIONS:
        for i in range(count):
            plan.append((label, s_kind, o_kind, templates[i % len(templates)]))
    for i in range(NO_RELATION_COUNT):
        s_kind, o_kind, template = NO_RELATION[i % len(NO_RELATION)]
        plan.append((NEGATIVE_LABEL, s_kind, o_kind, template))
    rng.shuffle(plan)
    rows: list[dict] = []
    seen: set[tuple] = set()
    for label, s_kind, o_kind, template in plan:
        while True:
            row = make_row(rng, label, s_kind, o_kind, template)
            key = (row["sentence"], row["subject_entity"]["start_idx"], row["object_entity"]["start_idx"])
            if key not in seen:
                seen.add(key)
                break
        rows.append({"guid": f"relex-sample-{len(rows):05d}", **row})
    return rows


def render_json(rows: list[dict]) -> str:
    return json.dumps(rows, ensure_ascii=False, indent=1) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT, help="where to write (default: the bundled file)")
    ap.add_argument("--check", action="store_true", help="compare with --out instead of writing")
    args = ap.parse_args(argv)
    text = render_json(generate())
    if args.check:
        same = args.out.exists() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if same else 'DIFFERS from the generator output'}")
        return 0 if same else 1
    from relex.io_utils import atomic_write_text

    atomic_write_text(args.out, text)
    print(f"wrote {args.out} ({len(json.loads(text))} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
